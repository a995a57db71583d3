"""The read cases of the capture benchmark: the SAE trainer's reads of an activation cache.

Chunk-aligned contiguous blocks of the train rows in a random order
(``prunescope.sae.iter_shuffled_batches``), per chunk size, on a page-cached file.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import torch

from bench.harness import interleaved_medians
from prunescope.activations import ChunkWriter
from prunescope.sae import iter_shuffled_batches


def sae_reads(
    n_rows: int, d_model: int, chunk_sizes: tuple[int, ...], folder: Path, repeats: int
) -> list[dict]:
    """One epoch of the SAE trainer's block reads, per chunk size, on a page-cached file."""
    rows = np.random.default_rng(0).standard_normal((n_rows, d_model), dtype=np.float32)
    cases = []
    for chunk in chunk_sizes:
        path = folder / f"read{chunk}.h5"
        with h5py.File(path, "w", libver=("v110", "latest")) as f:
            dataset = f.create_dataset(
                "train", shape=rows.shape, dtype="float32", chunks=(min(chunk, n_rows), d_model)
            )
            writer = ChunkWriter(dataset)
            writer.append(rows)
            writer.close()
        with h5py.File(path, "r") as f:
            dataset = f["train"]
            times = interleaved_medians(
                {
                    "blocks": lambda d=dataset: read_blocks(d),
                    "epoch": lambda d=dataset: shuffled_epoch(d),
                },
                repeats,
            )
        path.unlink()
        megabytes = rows.nbytes / 1e6
        cases.append(
            {
                "case": f"SAE read: {chunk} rows per chunk, d_model {d_model}",
                "chunk_rows": chunk,
                "d_model": d_model,
                "rows": n_rows,
                "block_rows": sae_block_rows(min(chunk, n_rows)),
                "block_read_s": times["blocks"]["median_s"],
                "block_read_mb_per_s": megabytes / times["blocks"]["median_s"],
                "shuffled_epoch_s": times["epoch"]["median_s"],
                "shuffled_epoch_rows_per_s": n_rows / times["epoch"]["median_s"],
            }
        )
    return cases


def sae_block_rows(chunk: int) -> int:
    """The block ``iter_shuffled_batches`` reads at once: whole chunks, 1,024 rows or more."""
    return chunk * max(1, math.ceil(1024 / chunk))


def read_blocks(dataset: h5py.Dataset) -> None:
    """Every block of the dataset once, in a random order (the trainer's reads alone)."""
    block = sae_block_rows(dataset.chunks[0])
    n_blocks = math.ceil(dataset.shape[0] / block)
    for b in torch.randperm(n_blocks, generator=torch.Generator().manual_seed(0)).tolist():
        np.asarray(dataset[b * block : (b + 1) * block])


def shuffled_epoch(dataset: h5py.Dataset, batch_size: int = 1024) -> None:
    """One epoch of SAE batches from ``iter_shuffled_batches`` (reads and shuffles)."""
    batches = iter_shuffled_batches(
        dataset, batch_size, 131_072, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    for _ in range(dataset.shape[0] // batch_size):
        next(batches)
