"""Shuffled training batches streamed from an activation cache larger than memory."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch


def iter_shuffled_batches(
    rows, batch_size: int, buffer_rows: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    """Endless batches of ``rows`` (an HDF5 dataset or array), never loading all of it.

    Each epoch visits chunk-aligned contiguous blocks in a random order; a buffer of about
    ``buffer_rows`` rows from several blocks is shuffled and cut into batches, and the
    rows left over join the next buffer, so every row is used once per epoch.
    """
    n_rows = rows.shape[0]
    chunks = getattr(rows, "chunks", None)
    chunk = chunks[0] if chunks else 4096
    block = chunk * max(1, math.ceil(1024 / chunk))
    n_blocks = math.ceil(n_rows / block)
    blocks_per_buffer = max(1, buffer_rows // block)
    leftover = torch.empty(0, rows.shape[1], device=device)
    while True:
        order = torch.randperm(n_blocks, generator=generator).tolist()
        for first in range(0, n_blocks, blocks_per_buffer):
            chosen = sorted(order[first : first + blocks_per_buffer])
            parts = [np.asarray(rows[b * block : min(n_rows, (b + 1) * block)]) for b in chosen]
            fresh = torch.from_numpy(np.concatenate(parts)).to(device, torch.float32)
            buffer = torch.cat([leftover, fresh])
            buffer = buffer[torch.randperm(len(buffer), generator=generator).to(device)]
            n_full = len(buffer) // batch_size * batch_size
            for start in range(0, n_full, batch_size):
                yield buffer[start : start + batch_size]
            leftover = buffer[n_full:]
