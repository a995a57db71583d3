"""Importance scores and boolean keep masks (True = the weight stays): pure tensor maths.

Row, matrix and N:M masks drop the lowest scores of each comparison group; global
magnitude pruning finds one threshold over every matrix without concatenating them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def count_to_prune(numel: int, sparsity: float) -> int:
    """How many of ``numel`` weights a group loses: ``round(sparsity * numel)``.

    Every rule uses this one rounding so that achieved sparsities agree with
    the requested one to within one weight per comparison group.
    """
    return int(round(sparsity * numel))


def stable_prune_mask(scores: Tensor, n_prune: int) -> Tensor:
    """Keep-mask over the last dim that drops the ``n_prune`` lowest scores.

    Ties go to the lower index (stable sort), so the count is exact and the
    result is reproducible.
    """
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune > 0:
        order = torch.sort(scores, dim=-1, stable=True).indices[..., :n_prune]
        keep.scatter_(-1, order, False)
    return keep


def row_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Per output row, keep the top ``1 - sparsity`` fraction of scores.

    Wanda's default comparison group (Sun et al. 2024, "per-output"), which
    section 3.1 of the paper describes as "for each row of each weight matrix".
    """
    return stable_prune_mask(scores, count_to_prune(scores.shape[-1], sparsity))


def matrix_mask(scores: Tensor, sparsity: float) -> Tensor:
    """One threshold for the whole matrix (Wanda with ``granularity: matrix``)."""
    flat = scores.reshape(-1)
    return stable_prune_mask(flat, count_to_prune(flat.numel(), sparsity)).view_as(scores)


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """N:M semi-structured mask: in every run of ``m`` consecutive inputs of a
    row, drop the ``n`` lowest scores (2:4 drops 2 of every 4).

    The pattern sparse tensor cores accelerate; Wanda and SparseGPT both offer it.
    """
    if not 0 < n < m:
        raise ValueError(f"N:M pattern {n}:{m} needs 0 < n < m")
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"N:M pruning needs in_features ({cols}) divisible by m ({m})")
    groups = scores.reshape(rows, cols // m, m)
    return stable_prune_mask(groups, n).reshape(rows, cols)


def wanda_scores(weight: Tensor, act_norm: Tensor) -> Tensor:
    """Wanda importance ``|W_ij| * ||X_j||_2`` (Sun et al. 2024, eq. 1).

    ``act_norm`` is the l2 norm over all calibration tokens of input column j,
    so weights that are large *and* fed large activations survive.
    """
    if act_norm.shape != (weight.shape[1],):
        raise ValueError(
            f"act_norm has shape {tuple(act_norm.shape)} but the weight has "
            f"{weight.shape[1]} input columns"
        )
    return weight.detach().float().abs() * act_norm.float().to(weight.device).unsqueeze(0)


def magnitudes(weight: Tensor) -> Tensor:
    """``|w|`` in float32, the score of magnitude pruning."""
    return weight.detach().abs().float()


def magnitude_mask_global(weights: list[Tensor], sparsity: float) -> list[Tensor]:
    """Global magnitude pruning: one threshold over all given weights.

    Section 3.1 of the paper: "a global threshold is computed over all linear
    layer weights, and weights below this threshold are zeroed". Exactly
    ``round(sparsity * total)`` weights are pruned; ties at the threshold go
    to the earlier matrix, then the earlier flat index. The threshold comes
    from a radix select over the matrices one at a time, so no concatenated
    copy of a multi-billion-weight model is ever built.
    """
    total = sum(w.numel() for w in weights)
    n_prune = count_to_prune(total, sparsity)
    if n_prune == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    threshold, ties_left = _kth_smallest_abs(weights, n_prune)
    masks = []
    for w in weights:
        a = magnitudes(w)
        prune = a < threshold
        if ties_left > 0:
            tied = a == threshold
            n_tied = int(tied.sum())
            if n_tied > ties_left:
                flat = tied.reshape(-1)
                tied = (flat & (flat.cumsum(0) <= ties_left)).view_as(a)
            ties_left -= min(n_tied, ties_left)
            prune |= tied
        masks.append(~prune)
    return masks


def _kth_smallest_abs(weights: list[Tensor], k: int) -> tuple[Tensor, int]:
    """The ``k``-th smallest (1-based) ``|w|`` over all weights, and its rank
    among the weights equal to it (how many of those ties to prune).

    Radix select on the int32 view of the float32 magnitudes, which orders
    non-negative floats like their values: one histogram of the high 16 bits,
    then one of the low 16 bits within the chosen high bucket.
    """
    prefix = 0
    for high_pass in (True, False):
        hist = torch.zeros(1 << 16, dtype=torch.int64)
        for w in weights:
            bits = magnitudes(w).reshape(-1).view(torch.int32)
            digits = bits >> 16 if high_pass else bits[(bits >> 16) == prefix] & 0xFFFF
            hist += torch.bincount(digits, minlength=1 << 16).cpu()
        cumulative = hist.cumsum(0)
        digit = int(torch.searchsorted(cumulative, torch.tensor(k)))
        k -= int(cumulative[digit - 1]) if digit > 0 else 0
        prefix = (prefix << 16) | digit
    value = torch.tensor([prefix], dtype=torch.int32).view(torch.float32)[0]
    return value.to(weights[0].device), k
