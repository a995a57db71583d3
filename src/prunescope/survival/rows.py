"""Plumbing: activation rows from caches or iterators, aligned between two sources and cut
into chunks of equal rows, with errors that name both sources."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from prunescope.errors import UserInputError

CHUNK_ELEMENTS = 2**24
"""Rows x features of one encoded chunk: 128 MiB per float64 copy, whatever d_sae."""


def default_batch_rows(d_sae: int) -> int:
    """Rows encoded at a time so a float64 copy of the latents stays near 128 MiB."""
    return max(1, CHUNK_ELEMENTS // d_sae)


def row_count(rows) -> int | None:
    """Rows of an array-like source (numpy, torch, h5py dataset); None for an iterator."""
    shape = getattr(rows, "shape", None)
    return None if shape is None else int(shape[0])


def iter_row_chunks(rows, batch_rows: int) -> Iterator[torch.Tensor]:
    """float32 2-D chunks of ``rows``: slices of an array-like, or an iterator's own chunks."""
    n = row_count(rows)
    chunks = rows if n is None else (rows[s : s + batch_rows] for s in range(0, n, batch_rows))
    for chunk in chunks:
        chunk = torch.as_tensor(np.asarray(chunk) if not torch.is_tensor(chunk) else chunk)
        if chunk.ndim != 2:
            raise ValueError(f"activation rows must come as 2-D chunks, got {tuple(chunk.shape)}")
        yield chunk.to(torch.float32)


def paired_chunks(
    first: Iterable, second: Iterable, batch_rows: int, names: tuple[str, str]
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first row, rows of ``first``, the same rows of ``second``), at most ``batch_rows``.

    The two sources may be chunked differently; their chunks are cut to common boundaries.
    Sources that end at different rows are refused, naming both and their row counts.
    """
    iters = [(c for c in source if len(c)) for source in (first, second)]
    pending: list = [None, None]
    start = 0
    while True:
        for side in (0, 1):
            if pending[side] is None or not len(pending[side]):
                pending[side] = next(iters[side], None)
        if pending[0] is None or pending[1] is None:
            left = [
                0 if rest is None else len(rest) + sum(map(len, it))
                for rest, it in zip(pending, iters, strict=True)
            ]
            if left[0] or left[1]:
                raise _row_mismatch(names, start + left[0], start + left[1])
            if start == 0:
                raise UserInputError(f"{names[0]} and {names[1]} hold no rows to compare")
            return
        size = min(len(pending[0]), len(pending[1]), batch_rows)
        yield start, pending[0][:size], pending[1][:size]
        pending = [p[size:] for p in pending]
        start += size


def row_pairs(first, second, batch_rows: int, names: tuple[str, str]):
    """``paired_chunks`` over two row sources (array-likes or iterators of chunks)."""
    return paired_chunks(
        iter_row_chunks(first, batch_rows), iter_row_chunks(second, batch_rows), batch_rows, names
    )


def _row_mismatch(names: tuple[str, str], n_first: int, n_second: int) -> UserInputError:
    return UserInputError(
        f"{names[0]} has {n_first} rows but {names[1]} has {n_second}: survival compares "
        "the same tokens, so both must hold the same rows in the same order"
    )


def check_same_rows(first, second, names: tuple[str, str]) -> None:
    """Refuse array-like sources of different lengths before any encoding starts."""
    n_first, n_second = row_count(first), row_count(second)
    if None not in (n_first, n_second) and n_first != n_second:
        raise _row_mismatch(names, n_first, n_second)
