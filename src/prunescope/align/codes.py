"""Codes of hidden neurons on DNF clauses (paper Section 2), "4P-positive" above all.

For hidden neuron i and clause S_j (four literals) the code is the sign pattern of the
feature-space weights C1[i, S_j], where C1 = W1 @ C0. Sign rules:

- a feature weight counts as positive when it is > 0; otherwise (including exactly 0) negative;
- the neuron's output sign is the sign of its margin W2[1, i] - W2[0, i], its weight towards the
  positive class relative to the negative one (with C = 2 classes only the margin matters);
  the output is positive when the margin is > 0, otherwise (including exactly 0) negative;
- a **4P-positive** code needs all four feature weights > 0, margin > 0 and bias b1[i] < 0
  (bias exactly 0 is not negative): a soft AND, ReLU(sum_l w_l x_l - |b|).

Pattern names count positive (P) and non-positive (N) weights: "4P", "3P1N", "2P2N", "1P3N",
"4N", each suffixed "-positive" or "-negative" by the output sign. The bias rule applies only to
"4P-positive"; "4P-positive-any-bias" drops it, so "4P-positive" + "4P-negative" can be fewer
than all 4P pairs.
"""

from __future__ import annotations

import numpy as np

from prunescope.align.data import CLAUSE_SIZE, check_clauses


def code_signs(C1: np.ndarray, clauses: np.ndarray) -> np.ndarray:
    """Number of positive (> 0) weights in C1[i, S_j] for every neuron i and clause j: (h, m/4)."""
    C1 = _as_matrix(C1, "C1")
    clauses = check_clauses(clauses, C1.shape[1])
    return (C1[:, clauses] > 0).sum(axis=2)


def output_margin(W2: np.ndarray) -> np.ndarray:
    """Each hidden neuron's weight to the positive class minus its weight to the negative: (h,)."""
    W2 = _as_matrix(W2, "W2")
    if W2.shape[0] != 2:
        raise ValueError(f"W2 must have 2 rows (negative, positive class), got {W2.shape[0]}.")
    return W2[1] - W2[0]


def four_p_positive(
    C1: np.ndarray, W2: np.ndarray, b1: np.ndarray, clauses: np.ndarray
) -> np.ndarray:
    """Bool (h, m/4): neuron i has all four weights on clause j > 0, margin > 0 and b1[i] < 0."""
    signs, margin, b1 = _signs_margin_bias(C1, W2, b1, clauses)
    return (signs == CLAUSE_SIZE) & (margin > 0)[:, None] & (b1 < 0)[:, None]


def code_counts(
    C1: np.ndarray, W2: np.ndarray, b1: np.ndarray, clauses: np.ndarray
) -> dict[str, int]:
    """Neuron-clause pairs of every sign pattern, plus "4P-positive-any-bias" and the number of
    "clauses_covered" by at least one 4P-positive neuron."""
    signs, margin, b1 = _signs_margin_bias(C1, W2, b1, clauses)
    positive_output = np.broadcast_to((margin > 0)[:, None], signs.shape)
    four_p = four_p_positive(C1, W2, b1, clauses)
    counts: dict[str, int] = {}
    for positives in range(CLAUSE_SIZE, -1, -1):
        name = pattern_name(positives)
        has_pattern = signs == positives
        if positives == CLAUSE_SIZE:
            counts["4P-positive"] = int(four_p.sum())
            counts["4P-positive-any-bias"] = int((has_pattern & positive_output).sum())
        else:
            counts[f"{name}-positive"] = int((has_pattern & positive_output).sum())
        counts[f"{name}-negative"] = int((has_pattern & ~positive_output).sum())
    counts["clauses_covered"] = int(four_p.any(axis=0).sum())
    return counts


def pattern_name(positives: int) -> str:
    """Name of the pattern with ``positives`` of four weights positive: "4P", "3P1N", ..., "4N"."""
    if not 0 <= positives <= CLAUSE_SIZE:
        raise ValueError(f"positives must lie in 0..4, got {positives}.")
    negatives = CLAUSE_SIZE - positives
    if negatives == 0:
        return "4P"
    if positives == 0:
        return "4N"
    return f"{positives}P{negatives}N"


def code_persistence(before: np.ndarray, after: np.ndarray) -> dict[str, int]:
    """Codes present before, after, kept (both), lost (before only) and created (after only)."""
    before, after = np.asarray(before), np.asarray(after)
    if before.dtype != bool or after.dtype != bool:
        raise ValueError("code maps must be boolean arrays.")
    if before.shape != after.shape:
        raise ValueError(f"code maps differ in shape: {before.shape} and {after.shape}.")
    return {
        "before": int(before.sum()),
        "after": int(after.sum()),
        "kept": int((before & after).sum()),
        "lost": int((before & ~after).sum()),
        "created": int((~before & after).sum()),
    }


def _signs_margin_bias(
    C1: np.ndarray, W2: np.ndarray, b1: np.ndarray, clauses: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    signs = code_signs(C1, clauses)
    margin = output_margin(W2)
    b1 = np.asarray(b1)
    hidden = signs.shape[0]
    if margin.shape != (hidden,):
        raise ValueError(f"W2 has {margin.shape[0]} columns but C1 has {hidden} rows.")
    if b1.shape != (hidden,):
        raise ValueError(f"b1 has shape {b1.shape} but C1 has {hidden} rows.")
    return signs, margin, b1


def _as_matrix(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {array.shape}.")
    return array
