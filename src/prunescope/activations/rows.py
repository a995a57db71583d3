"""Activation rows streamed batch by batch: running moments, finite checks, whole-chunk writes."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from prunescope.artifacts import nan_or_inf


class RunningMoments:
    """Float64 per-dimension mean and population std (ddof=0) of rows seen batch by batch.

    Merges per-batch means and centred sums of squares (Chan et al.), which avoids the
    cancellation of ``E[x^2] - E[x]^2`` when a dimension's mean dwarfs its spread, as
    happens in residual streams with massive activations.
    """

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self._m2 = np.zeros(dim, dtype=np.float64)

    def update(self, rows: np.ndarray) -> None:
        x = np.array(rows, dtype=np.float64)  # always a copy, since it is centred in place
        n_new = x.shape[0]
        if n_new == 0:
            return
        batch_mean = x.mean(axis=0)
        # in place: the values of np.square(x - batch_mean), 5x faster without temporaries
        x -= batch_mean
        batch_m2 = np.square(x, out=x).sum(axis=0)
        total = self.count + n_new
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n_new / total)
        self._m2 = self._m2 + batch_m2 + np.square(delta) * (self.count * n_new / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("no rows were seen, so there is no standard deviation")
        return np.sqrt(self._m2 / self.count)


def all_finite(values: torch.Tensor) -> bool:
    """Whether every element of a floating-point tensor is finite.

    A NaN or Inf anywhere makes the sum non-finite, so one sum settles the usual case; the
    element-wise test runs only when the sum is not finite, which finite values can also
    cause by overflowing it.
    """
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())


def require_finite_rows(rows: torch.Tensor, start: int, source: str) -> None:
    """Refuse a batch of activation rows holding NaN or Inf, naming ``source`` and the first
    such row's index in it (``start`` is the batch's first row)."""
    if not all_finite(rows):
        row = int((~torch.isfinite(rows)).any(-1).nonzero()[0])
        raise FloatingPointError(f"{source} has {nan_or_inf(rows[row])} in row {start + row}")


class ChunkWriter:
    """Appends rows, in order, to a chunked unfiltered 2-D dataset, one whole chunk at a time.

    Rows gather in a buffer of one chunk, which goes to the file as a raw chunk once full,
    so no chunk is written twice or read back whatever the batch size (a batch that ends
    mid-chunk would otherwise make HDF5 re-read the chunk when a chunk exceeds its cache).
    ``close`` writes the last chunk, zero-padded past the end of the dataset.
    """

    def __init__(self, dataset: h5py.Dataset):
        if dataset.ndim != 2 or dataset.chunks is None or dataset.chunks[1] != dataset.shape[1]:
            raise ValueError(
                f"dataset {dataset.name} must be 2-D and chunked by whole rows, got shape "
                f"{dataset.shape} with chunks {dataset.chunks}"
            )
        if dataset.id.get_create_plist().get_nfilters():
            raise ValueError(f"dataset {dataset.name} must have no filters (compression)")
        self.dataset = dataset
        self._buffer = np.zeros(dataset.chunks, dtype=dataset.dtype)
        self._filled = 0
        self._chunk_start = 0

    @property
    def rows_written(self) -> int:
        return self._chunk_start + self._filled

    def append(self, rows: np.ndarray) -> None:
        """Add ``rows`` ``[n, width]`` after the rows already appended."""
        if self.rows_written + len(rows) > self.dataset.shape[0]:
            raise ValueError(
                f"appending {len(rows)} rows after {self.rows_written} overflows dataset "
                f"{self.dataset.name} of {self.dataset.shape[0]} rows"
            )
        taken = 0
        while taken < len(rows):
            n = min(len(rows) - taken, len(self._buffer) - self._filled)
            self._buffer[self._filled : self._filled + n] = rows[taken : taken + n]
            self._filled += n
            taken += n
            if self._filled == len(self._buffer):
                self._write_chunk()

    def close(self) -> None:
        """Write the rows still buffered; call once, after the last ``append``."""
        if self._filled:
            self._buffer[self._filled :] = 0
            self._write_chunk()

    def _write_chunk(self) -> None:
        self.dataset.id.write_direct_chunk((self._chunk_start, 0), self._buffer)
        self._chunk_start += self._filled
        self._filled = 0
