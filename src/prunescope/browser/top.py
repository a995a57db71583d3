"""Each feature's strongest activations, kept while an SAE encodes a stream of rows.

A feature page shows a feature by the text it fires on most. Finding that text needs a
pass over every eval row, which the activation-level survival already makes, so the
per-feature top-N and a histogram are accumulated there (``TopActivations.add`` per
chunk) rather than by a second pass. The result is bounded: ``d_sae x n_top`` values and
row ids plus ``d_sae x (len(edges) + 1)`` counts, whatever the number of rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np
import torch

from prunescope.io import atomic_path

HISTOGRAM_EDGES = np.logspace(-3, 3, 25)
"""Bin edges of the activation histograms: 24 log-spaced bins from 1e-3 to 1e3, plus one
below (positive activations under 1e-3) and one at or above 1e3."""
FORMAT_VERSION = 1


class TopActivations:
    """Per feature: the ``n_top`` largest positive activations over all rows added, with
    their row ids, and a histogram of its positive values. Equal values from different
    chunks keep the earlier row first; within one chunk, ``torch.topk`` chooses among
    values tied at the cut (the same choice for the same chunking on the same device).

    Chunks must come in row order (``start`` is the first row's id), so row ids are the
    rows' positions in the stream.
    """

    def __init__(self, d_sae: int, n_top: int, edges: np.ndarray = HISTOGRAM_EDGES):
        if n_top < 1:
            raise ValueError(f"n_top must be at least 1, got {n_top}")
        self.values = torch.full((d_sae, n_top), -torch.inf)
        self.rows = torch.full((d_sae, n_top), -1, dtype=torch.int64)
        self.edges = np.asarray(edges, dtype=np.float64)
        self.counts = torch.zeros((d_sae, len(self.edges) + 1), dtype=torch.int64)
        self.n_rows = 0

    @property
    def d_sae(self) -> int:
        return self.values.shape[0]

    @property
    def n_top(self) -> int:
        return self.values.shape[1]

    def add(self, codes: torch.Tensor, start: int) -> None:
        """Take one chunk of latent activations ``(rows, d_sae)`` whose first row is ``start``."""
        if start != self.n_rows:
            raise ValueError(
                f"chunks must come in row order: expected row {self.n_rows}, got {start}"
            )
        if codes.ndim != 2 or codes.shape[1] != self.d_sae:
            raise ValueError(
                f"expected latents of shape (rows, {self.d_sae}), got {tuple(codes.shape)}"
            )
        codes = codes.detach().float()
        k = min(self.n_top, len(codes))
        values, index = codes.topk(k, dim=0)
        self._merge(values.T.cpu(), index.T.cpu() + start)
        self.counts += histogram_counts(codes, self.edges).cpu()
        self.n_rows += len(codes)

    def _merge(self, values: torch.Tensor, rows: torch.Tensor) -> None:
        values = torch.cat([self.values, values], dim=1)
        rows = torch.cat([self.rows, rows], dim=1)
        # order by value, then row: stable sorts, the secondary key first
        by_row = rows.where(rows >= 0, torch.iinfo(torch.int64).max).argsort(dim=1, stable=True)
        values, rows = values.gather(1, by_row), rows.gather(1, by_row)
        by_value = values.argsort(dim=1, descending=True, stable=True)[:, : self.n_top]
        values, rows = values.gather(1, by_value), rows.gather(1, by_value)
        silent = ~(values > 0)
        self.values = values.masked_fill(silent, -torch.inf)
        self.rows = rows.masked_fill(silent, -1)

    def result(self) -> TopResult:
        values = self.values.numpy().copy()
        values[self.rows.numpy() < 0] = np.nan
        return TopResult(
            values=values.astype(np.float32),
            rows=self.rows.numpy().copy(),
            counts=self.counts.numpy().copy(),
            edges=self.edges.copy(),
            n_rows=self.n_rows,
        )


def histogram_counts(codes: torch.Tensor, edges: np.ndarray) -> torch.Tensor:
    """Per feature (column), how many positive activations fall in each bin of ``edges``:
    ``(d_sae, len(edges) + 1)``; bin 0 holds those under ``edges[0]``."""
    boundaries = torch.as_tensor(edges, dtype=codes.dtype, device=codes.device)
    bins = torch.bucketize(codes, boundaries, right=True)
    n_bins = len(edges) + 1
    flat = (torch.arange(codes.shape[1], device=codes.device) * n_bins + bins)[codes > 0]
    counts = torch.bincount(flat, minlength=codes.shape[1] * n_bins)
    return counts.reshape(codes.shape[1], n_bins)


@dataclass
class TopResult:
    """What ``TopActivations`` kept: ``values`` (d_sae, n_top) descending, NaN past the
    last positive activation; ``rows`` their row ids, -1 there; ``counts`` the histogram."""

    values: np.ndarray
    rows: np.ndarray
    counts: np.ndarray
    edges: np.ndarray
    n_rows: int

    @property
    def fired(self) -> np.ndarray:
        """How many rows each feature fired on (positive activation)."""
        return self.counts.sum(axis=1)


def save_top_activations(
    path: str | os.PathLike,
    sides: dict[str, TopResult],
    attrs: dict | None = None,
    contexts: dict[str, np.ndarray] | None = None,
) -> None:
    """One HDF5 group per side (e.g. ``dense`` and ``pruned``) and, if given, a
    ``contexts`` group (``feature_contexts``' arrays), written atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs.update(attrs or {})
        for name, side in sides.items():
            group = f.create_group(f"top/{name}")
            for field in ("values", "rows", "counts", "edges"):
                group.create_dataset(field, data=getattr(side, field))
            group.attrs["n_rows"] = side.n_rows
        for name, array in (contexts or {}).items():
            f.create_dataset(f"contexts/{name}", data=array)


def load_top_activations(
    path: str | os.PathLike,
) -> tuple[dict[str, TopResult], dict[str, np.ndarray], dict]:
    """``(sides, contexts, attrs)`` as ``save_top_activations`` wrote them."""
    with h5py.File(path, "r") as f:
        sides = {
            name: TopResult(
                **{field: group[field][()] for field in ("values", "rows", "counts", "edges")},
                n_rows=int(group.attrs["n_rows"]),
            )
            for name, group in f["top"].items()
        }
        contexts = {name: data[()] for name, data in f.get("contexts", {}).items()}
        return sides, contexts, dict(f.attrs)
