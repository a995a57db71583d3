"""The reverse view: for each feature of an SAE trained on the pruned model, the dense-SAE
feature whose activations correlate with it most, and how many features are new."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from prunescope.browser.top import TopActivations
from prunescope.matching import check_taus
from prunescope.settings import PAPER_TAUS
from prunescope.survival.encoders import as_latent_encoder, encode_rows
from prunescope.survival.moments import (
    Moments,
    add_cross_products,
    cross_correlation,
    feature_moments,
    firing_rate,
    merge_moments,
    row_best,
)
from prunescope.survival.rows import check_same_rows, default_batch_rows, row_count, row_pairs

CROSS_BYTES = 4 * 2**30
"""Default budget of the reverse view's float64 cross-moment accumulator: 18,432 x 18,432
(2.7 GB) fits in one pass over the rows; wider dictionaries take several passes."""
CORRELATION_BYTES = 64 * 2**20
"""Target size of one float64 block of correlations (each needs about four such blocks)."""


@dataclass
class ReverseMatch:
    """Each pruned-SAE feature's best activation-correlated dense-SAE feature."""

    best_dense: np.ndarray
    """int64 dense feature of highest correlation (lowest index on ties); -1 if none."""
    correlation: np.ndarray
    """float64 that correlation; NaN when no dense feature gives a defined correlation."""
    pruned_rate: np.ndarray
    """Firing rate of each pruned-SAE feature on the pruned activations."""
    varies: np.ndarray
    """Whether the feature's activation varies over the tokens (else no correlation)."""
    taus: np.ndarray
    n_rows: int

    def new(self) -> np.ndarray:
        """(n_taus, d_p): the feature varies and no dense feature correlates >= tau."""
        return self.varies & ~(self.correlation >= self.taus[:, None])

    def table(self) -> pd.DataFrame:
        table = pd.DataFrame(
            {
                "feature": np.arange(len(self.best_dense)),
                "pruned_rate": self.pruned_rate,
                "varies": self.varies,
                "best_dense": self.best_dense,
                "correlation": self.correlation,
            }
        )
        table.attrs["n_rows"] = self.n_rows
        return table

    @classmethod
    def from_table(cls, table: pd.DataFrame, taus: Sequence[float]) -> ReverseMatch:
        """A reverse view read back from its ``table()`` (``n_rows`` from attrs, or -1)."""
        return cls(
            best_dense=table["best_dense"].to_numpy(dtype=np.int64),
            correlation=table["correlation"].to_numpy(dtype=np.float64),
            pruned_rate=table["pruned_rate"].to_numpy(dtype=np.float64),
            varies=table["varies"].to_numpy(dtype=bool),
            taus=check_taus(taus),
            n_rows=int(table.attrs.get("n_rows", -1)),
        )

    def counts(self) -> pd.DataFrame:
        """Per tau: alive pruned features, how many are new, and how many have no defined
        correlation (constant features, or no varying dense feature) alongside."""
        alive = self.pruned_rate > 0
        n_alive = int(alive.sum())
        undefined = int((alive & np.isnan(self.correlation)).sum())
        rows = []
        for tau, new in zip(self.taus, self.new(), strict=True):
            n_new = int(new.sum())
            rows.append(
                {
                    "tau": float(tau),
                    "n_alive": n_alive,
                    "n_new": n_new,
                    "new_fraction": n_new / n_alive if n_alive else math.nan,
                    "n_undefined": undefined,
                    "note": "" if n_alive else "no pruned feature fires; fraction undefined",
                }
            )
        return pd.DataFrame(rows)


def dense_block_size(d_p: int, d_d: int, max_bytes: int) -> int:
    """Dense features per pass so the float64 (d_p, block) accumulator fits ``max_bytes``."""
    return max(1, min(d_d, max_bytes // (8 * d_p)))


def _feeding(encoded, top: TopActivations):
    """``encoded`` as it is, each chunk's pruned-side latents also given to ``top``."""
    for own, dense in encoded:
        top.add(own, top.n_rows)
        yield own, dense


def best_dense_partners(
    pruned_rows,
    dense_rows,
    pruned_sae,
    dense_sae,
    taus: Sequence[float] = PAPER_TAUS,
    *,
    batch_rows: int | None = None,
    max_bytes: int = CROSS_BYTES,
    sources: tuple[str, str] = ("pruned activations", "dense activations"),
    top: TopActivations | None = None,
) -> ReverseMatch:
    """For each feature of ``pruned_sae`` (on ``pruned_rows``), the feature of ``dense_sae``
    (on ``dense_rows``, the same tokens) whose activations correlate with it most.
    ``top`` keeps each ``pruned_sae`` feature's strongest activations as the rows pass.

    Peak memory: the float64 (d_p, block) cross-moment accumulator, block = all d_d dense
    features when 8 d_p d_d bytes fit ``max_bytes``, plus one float32 product block
    (``PRODUCT_BYTES``) and the chunk's latents and their shifted copies (about
    8 batch_rows (d_p + d_d) bytes, plus the encoders' own work). At d_p = d_d = 18,432 that
    is a 2.5 GiB accumulator and, measured on CPU with both SAEs loaded, about 4.5 GB in all
    (``memory.reverse_survival_memory`` itemises it). When the accumulator
    does not fit, the rows are read and encoded once per block of dense features, which
    needs array-like sources.
    """
    taus_array = check_taus(taus)
    enc_p, enc_d = as_latent_encoder(pruned_sae), as_latent_encoder(dense_sae)
    d_p, d_d = enc_p.d_sae, enc_d.d_sae
    check_same_rows(pruned_rows, dense_rows, sources)
    batch_rows = batch_rows or default_batch_rows(max(d_p, d_d))
    block = dense_block_size(d_p, d_d, max_bytes)
    if block < d_d and None in (row_count(pruned_rows), row_count(dense_rows)):
        raise ValueError(
            f"a {d_p} x {d_d} cross-moment matrix exceeds max_bytes={max_bytes}, so the rows "
            "are read once per block of dense features: pass array-likes (such as the "
            "cache's HDF5 datasets), not iterators, or raise max_bytes"
        )
    best = torch.full((d_p,), -math.inf, dtype=torch.float64)
    best_index = torch.full((d_p,), -1, dtype=torch.int64)
    shifts = None
    for lo in range(0, d_d, block):
        columns = slice(lo, min(lo + block, d_d))
        chunks = row_pairs(pruned_rows, dense_rows, batch_rows, sources)
        encoded = (
            (encode_rows(enc_p, p, start, sources[0]), encode_rows(enc_d, d, start, sources[1]))
            for start, p, d in chunks
        )
        if top is not None and lo == 0:
            encoded = _feeding(encoded, top)
        cross, moments_p, moments_d, shifts = _cross_pass(encoded, columns, shifts)
        moments_d = Moments(moments_d.n, *(t[columns] for t in moments_d[1:]))
        step = max(1, CORRELATION_BYTES // (8 * cross.shape[1]))
        for p_lo in range(0, d_p, step):
            rows = slice(p_lo, p_lo + step)
            block_p = Moments(moments_p.n, *(t[rows] for t in moments_p[1:]))
            shift_p, shift_d = shifts[0][rows], shifts[1][columns]
            corr = cross_correlation(cross[rows], shift_p, shift_d, block_p, moments_d)
            value, index = (t.cpu() for t in row_best(corr))
            # earlier blocks hold lower dense indices, so only a strictly better value wins
            better = value > best[rows]
            best[rows] = torch.where(better, value, best[rows])
            best_index[rows] = torch.where(better, index + lo, best_index[rows])
        del cross, corr
    return ReverseMatch(
        best_dense=best_index.numpy(),
        correlation=best.masked_fill(best_index < 0, math.nan).numpy(),
        pruned_rate=firing_rate(moments_p).cpu().numpy(),
        varies=(moments_p.m2 > 0).cpu().numpy(),
        taus=taus_array,
        n_rows=moments_p.n,
    )


def _cross_pass(encoded, columns: slice, shifts):
    """One pass over encoded (pruned, dense) latent chunks: the float64 summed shifted
    cross products with the dense features ``columns``, both sides' moments, and the
    shifts (given, or the first chunk's means).

    A shift near each feature's mean keeps ``E[PD] - E[P]E[D]`` from cancelling for
    features that fire on most tokens with a steady value; any shift gives the same
    correlation in exact arithmetic, so the first chunk's means serve.
    """
    cross = moments_p = moments_d = None
    for p, d in encoded:
        part_p, part_d = feature_moments(p), feature_moments(d)
        moments_p = part_p if moments_p is None else merge_moments(moments_p, part_p)
        moments_d = part_d if moments_d is None else merge_moments(moments_d, part_d)
        if shifts is None:
            shifts = part_p.mean.to(p.dtype), part_d.mean.to(d.dtype)
        if cross is None:
            width = len(range(*columns.indices(d.shape[1])))
            cross = torch.zeros(p.shape[1], width, dtype=torch.float64, device=p.device)
        add_cross_products(cross, p - shifts[0], d[:, columns] - shifts[1][columns])
    return cross, moments_p, moments_d, shifts


def new_feature_table(
    reverse: dict[tuple[str, int, str], pd.DataFrame], taus: Sequence[float]
) -> pd.DataFrame:
    """Per (model, layer, condition) and tau: how many alive features of the condition's SAE
    are new (no dense-SAE feature correlates >= tau), beside the floor: the same count for
    a dense SAE of the same seed, which has no pruning to blame. ``reverse`` maps
    (model, layer, condition) to a ``ReverseMatch.table()``, ``dense`` included."""
    rows = []
    for (model, layer, cond), table in reverse.items():
        counts = ReverseMatch.from_table(table, taus).counts()
        rows.append(counts.assign(model=model, layer=layer, condition=cond))
    out = pd.concat(rows, ignore_index=True)
    floor = out[out["condition"] == "dense"].set_index(["model", "layer", "tau"])
    out = out.join(floor["new_fraction"].rename("floor_new_fraction"), on=["model", "layer", "tau"])
    out["excess_over_floor"] = out["new_fraction"] - out["floor_new_fraction"]
    keys = ["model", "layer", "condition", "tau"]
    return out[keys + [c for c in out.columns if c not in keys]]
