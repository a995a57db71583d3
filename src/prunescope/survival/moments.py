"""The maths: per-feature moments of latent matrices and the statistics built on them.

Moments of row chunks merge exactly (Chan et al.'s pairwise update), so a statistic over
millions of rows does not depend on how the rows were chunked. The cross moments of two
dictionaries give their full correlation matrix, for the reverse view.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd
import torch

from prunescope.matching import full_float32_matmul

PRODUCT_BYTES = 256 * 2**20
"""Target size of one float32 block of a chunk's cross product before it is accumulated."""


class Moments(NamedTuple):
    """Per-feature moments of the rows of one ``(rows, d_sae)`` latent matrix."""

    n: int
    mean: torch.Tensor
    """float64 mean activation."""
    m2: torch.Tensor
    """float64 sum of squared deviations from ``mean``; exactly 0 for a constant feature."""
    fired: torch.Tensor
    """int64 number of rows with activation > 0."""


class PairedMoments(NamedTuple):
    """Moments of two latent matrices on the same rows (A dense, B pruned) and their
    per-feature co-moments."""

    a: Moments
    b: Moments
    c_ab: torch.Tensor
    """float64 sum over rows of (a - mean_a) * (b - mean_b), per feature."""
    fired_both: torch.Tensor
    """int64 rows where the feature fires in both."""


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Centred sums instead of raw sums of squares: sum(x^2) - n mean^2 cancels for a feature
    # that fires on most tokens with a steady value, and a constant feature must come out
    # with variance exactly 0 (its correlation is NaN, not whatever the round-off says).
    # (A float64 sum of float32 copies of one value is exact, so its mean is that value.)
    x64 = x.to(torch.float64, copy=True)
    mean = x64.mean(0)
    return mean, x64.sub_(mean)


def feature_moments(x: torch.Tensor) -> Moments:
    """Moments of one chunk of latents ``x`` (rows, d_sae)."""
    mean, centred = _centred(x)
    m2 = torch.linalg.vecdot(centred, centred, dim=0)
    return Moments(len(x), mean, m2, (x > 0).sum(0))


def paired_moments(a: torch.Tensor, b: torch.Tensor) -> PairedMoments:
    """Moments of one chunk of dense latents ``a`` and pruned latents ``b`` of the same rows."""
    if a.shape != b.shape:
        raise ValueError(f"paired latents differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    mean_a, ca = _centred(a)
    mean_b, cb = _centred(b)
    moments_a = Moments(len(a), mean_a, torch.linalg.vecdot(ca, ca, dim=0), (a > 0).sum(0))
    moments_b = Moments(len(b), mean_b, torch.linalg.vecdot(cb, cb, dim=0), (b > 0).sum(0))
    both = ((a > 0) & (b > 0)).sum(0)
    return PairedMoments(moments_a, moments_b, torch.linalg.vecdot(ca, cb, dim=0), both)


def merge_moments(x: Moments, y: Moments) -> Moments:
    """Moments of the rows of ``x`` and ``y`` together (Chan et al.'s pairwise update)."""
    n = x.n + y.n
    delta = y.mean - x.mean
    mean = x.mean + delta * (y.n / n)
    m2 = x.m2 + y.m2 + delta.square() * (x.n * y.n / n)
    return Moments(n, mean, m2, x.fired + y.fired)


def merge_paired(x: PairedMoments, y: PairedMoments) -> PairedMoments:
    """Paired moments of the rows of ``x`` and ``y`` together."""
    n_x, n_y = x.a.n, y.a.n
    delta_a, delta_b = y.a.mean - x.a.mean, y.b.mean - x.b.mean
    c_ab = x.c_ab + y.c_ab + delta_a * delta_b * (n_x * n_y / (n_x + n_y))
    return PairedMoments(
        merge_moments(x.a, y.a), merge_moments(x.b, y.b), c_ab, x.fired_both + y.fired_both
    )


def firing_rate(m: Moments) -> torch.Tensor:
    """float64 fraction of rows on which each feature fires (as ``evaluate_sae`` counts it)."""
    return m.fired.double() / m.n


def pearson(m: PairedMoments) -> torch.Tensor:
    """Per-feature correlation of dense and pruned activations; NaN where either side has
    zero variance (never fires, or always the same value): undefined, not uncorrelated."""
    scale = torch.sqrt(m.a.m2 * m.b.m2)
    r = (m.c_ab / scale).clamp(-1.0, 1.0)
    return torch.where(scale > 0, r, math.nan)


def jaccard(m: PairedMoments) -> torch.Tensor:
    """|fires in A and B| / |fires in A or B| per feature; NaN when it fires in neither."""
    union = m.a.fired + m.b.fired - m.fired_both
    return torch.where(union > 0, m.fired_both.double() / union.clamp_min(1), math.nan)


def mean_ratio(m: PairedMoments) -> torch.Tensor:
    """Pruned mean activation / dense mean activation; NaN when the dense mean is 0."""
    return torch.where(m.a.mean != 0, m.b.mean / m.a.mean, math.nan)


def survival_table(m: PairedMoments) -> pd.DataFrame:
    """One row per feature: firing rates on both sides and the three survival statistics."""
    columns = {
        "feature": torch.arange(len(m.a.mean)),
        "dense_rate": firing_rate(m.a),
        "pruned_rate": firing_rate(m.b),
        "correlation": pearson(m),
        "jaccard": jaccard(m),
        "mean_ratio": mean_ratio(m),
    }
    table = pd.DataFrame({name: value.cpu().numpy() for name, value in columns.items()})
    table.attrs["n_rows"] = m.a.n
    return table


def add_cross_products(cross: torch.Tensor, p: torch.Tensor, d: torch.Tensor) -> None:
    """``cross += p^T d`` for one chunk of rows: a float32 product, accumulated in float64.

    float32 because the product is a GEMM over whole dictionaries, and one chunk of a few
    thousand rows loses only ~1e-6 relatively; float64 across chunks so the error does not
    grow with millions of rows. The product is formed for blocks of ``cross``'s rows, so
    its float32 copy never exceeds ``PRODUCT_BYTES``.
    """
    step = max(1, PRODUCT_BYTES // (4 * d.shape[1]))
    with full_float32_matmul():
        for lo in range(0, p.shape[1], step):
            cross[lo : lo + step] += p[:, lo : lo + step].T @ d


def cross_correlation(
    cross: torch.Tensor,
    shift_p: torch.Tensor,
    shift_d: torch.Tensor,
    moments_p: Moments,
    moments_d: Moments,
) -> torch.Tensor:
    """Correlation matrix (d_p, d_d) from the summed shifted cross products ``cross`` and
    the per-feature moments of both sides over the same rows; NaN where a feature of either
    side has zero variance.

    cov = sum((p - s_p)(d - s_d)) / n - (mean_p - s_p)(mean_d - s_d), exact for any shift.
    """
    n = moments_p.n
    offset_p = moments_p.mean - shift_p.to(torch.float64)
    offset_d = moments_d.mean - shift_d.to(torch.float64)
    # in place where possible: two (d_p, d_d) temporaries, not six
    cov = cross.to(torch.float64, copy=True).div_(n).addr_(offset_p, offset_d, alpha=-1)
    scale = torch.outer(moments_p.m2.sqrt(), moments_d.m2.sqrt()).div_(n)
    return cov.div_(scale).clamp_(-1.0, 1.0).masked_fill_(scale == 0, math.nan)


def row_best(corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the largest finite value and its first column; (NaN, -1) if none is finite."""
    values, index = corr.nan_to_num(nan=-math.inf).max(dim=1)
    defined = values > -math.inf
    return torch.where(defined, values, math.nan), torch.where(defined, index, -1)
