"""Activation-level survival of one dictionary's features from the dense to the pruned
model's activations, beside the matched-noise control, and its survival per threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from prunescope.browser.top import TopActivations
from prunescope.matching import check_taus
from prunescope.settings import PAPER_TAUS
from prunescope.survival.encoders import as_latent_encoder, encode_rows
from prunescope.survival.moments import (
    firing_rate,
    merge_paired,
    paired_moments,
    pearson,
    survival_table,
)
from prunescope.survival.rows import check_same_rows, default_batch_rows, row_count, row_pairs


def activation_survival(
    dense_rows,
    pruned_rows,
    sae,
    *,
    control_seed: int | None = None,
    batch_rows: int | None = None,
    sources: tuple[str, str] = ("dense activations", "pruned activations"),
    tops: tuple[TopActivations, TopActivations] | None = None,
) -> pd.DataFrame:
    """Per-feature survival of ``sae``'s features from dense to pruned activations.

    ``dense_rows`` and ``pruned_rows`` hold the same tokens in the same order: each an
    array-like (h5py dataset, numpy array, tensor) or an iterable of 2-D row chunks.
    ``sources`` names them in errors. Returns the ``survival_table`` columns (feature,
    dense_rate, pruned_rate, correlation, jaccard, mean_ratio), ``attrs["n_rows"]``.

    With ``control_seed``, also ``control_rate`` and ``control_correlation``: the same
    statistics between the dense activations and the dense activations plus random noise
    as large as pruning's change (``matched_noise``), the survival any perturbation of that
    size would leave. This reads the rows twice, so it needs array-like sources.

    ``tops`` (see ``top_activations_of``), fed with the dense and the pruned latents of
    every chunk, keep each feature's strongest activations on either side as they pass.
    """
    encoder = as_latent_encoder(sae)
    check_same_rows(dense_rows, pruned_rows, sources)
    batch_rows = batch_rows or default_batch_rows(encoder.d_sae)
    profile = generator = control = None
    if control_seed is not None:
        profile = perturbation_profile(dense_rows, pruned_rows, batch_rows, sources)
        generator = torch.Generator().manual_seed(int(control_seed))
    total = None
    chunks = row_pairs(dense_rows, pruned_rows, batch_rows, sources)
    for start, dense, pruned in chunks:
        a = encode_rows(encoder, dense, start, sources[0])
        b = encode_rows(encoder, pruned, start, sources[1])
        part = paired_moments(a, b)
        if tops is not None:
            tops[0].add(a, start)
            tops[1].add(b, start)
        total = part if total is None else merge_paired(total, part)
        if profile is not None:
            noisy = matched_noise(dense, pruned, profile, generator)
            part = paired_moments(a, encode_rows(encoder, noisy, start, "the noise control"))
            control = part if control is None else merge_paired(control, part)
    table = survival_table(total)
    if control is not None:
        table["control_rate"] = firing_rate(control.b).cpu().numpy()
        table["control_correlation"] = pearson(control).cpu().numpy()
    return table


def top_activations_of(sae, n_top: int) -> tuple[TopActivations, TopActivations]:
    """Empty (dense, pruned) accumulators of ``n_top`` activations for ``sae``'s features."""
    d_sae = as_latent_encoder(sae).d_sae
    return TopActivations(d_sae, n_top), TopActivations(d_sae, n_top)


# --- the control: a random perturbation as large as pruning's ---


def perturbation_profile(
    dense_rows, pruned_rows, batch_rows: int, sources: tuple[str, str]
) -> torch.Tensor:
    """float64 per-dimension mean squared difference (pruned - dense) over all rows."""
    if None in (row_count(dense_rows), row_count(pruned_rows)):
        raise ValueError(
            "the noise control reads the rows twice: pass array-likes (such as the cache's "
            "HDF5 datasets), not iterators"
        )
    total, n = None, 0
    chunks = row_pairs(dense_rows, pruned_rows, batch_rows, sources)
    for _, dense, pruned in chunks:
        part = (pruned.double() - dense.double()).square().sum(0)
        total = part if total is None else total + part
        n += len(dense)
    return total / n


def matched_noise(
    dense: torch.Tensor, pruned: torch.Tensor, profile: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``dense`` moved, row by row, as far as pruning moved it but in a random direction.

    The direction is Gaussian with per-dimension variance ``profile`` (pruning's own mean
    squared change per dimension, so outlier dimensions get their share), drawn on the CPU
    from ``generator`` so a seed gives the same noise on any device; its length is the
    row's ``||pruned - dense||``. A feature that survives pruning no better than this
    noise is fragile to any perturbation of that size, not to pruning in particular. The
    draws follow the chunking, so the same seed and ``batch_rows`` give the same control.
    """
    direction = torch.randn(dense.shape, generator=generator, dtype=torch.float64)
    direction = direction.mul_(profile.cpu().sqrt())
    length = (pruned.double() - dense.double()).norm(dim=1, keepdim=True).cpu()
    norm = direction.norm(dim=1, keepdim=True)
    step = direction.mul_(torch.where(norm > 0, length / norm.clamp_min(1e-300), 0.0))
    return (dense.double() + step.to(dense.device)).to(torch.float32)


def survival_fractions(table: pd.DataFrame, taus: Sequence[float] = PAPER_TAUS) -> pd.DataFrame:
    """Per tau: the fraction of alive dense features (dense_rate > 0) whose correlation
    reaches tau, with the counts behind it.

    An alive feature with no defined correlation (silent on the pruned activations, or
    constant on either side) does not survive; ``n_undefined`` counts those and
    ``n_silent`` the ones that never fire on the pruned activations.
    """
    taus_array = check_taus(taus)
    alive = table["dense_rate"].to_numpy() > 0
    correlation = table["correlation"].to_numpy()
    n_alive = int(alive.sum())
    undefined = int((alive & np.isnan(correlation)).sum())
    silent = int((alive & (table["pruned_rate"].to_numpy() == 0)).sum())
    rows = []
    for tau in taus_array:
        n_survived = int((alive & (correlation >= tau)).sum())
        rows.append(
            {
                "tau": float(tau),
                "n_alive": n_alive,
                "n_survived": n_survived,
                "survival": n_survived / n_alive if n_alive else math.nan,
                "n_undefined": undefined,
                "n_silent": silent,
                "note": "" if n_alive else "no dense feature fires; survival undefined",
            }
        )
    return pd.DataFrame(rows)
