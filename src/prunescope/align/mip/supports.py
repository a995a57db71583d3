"""Feasible supports of one row and the best weights on each: counting, listing, refits and
exact enumeration.

A support is the bool set of entries of ``w`` that stay non-zero: at most ``keep`` of them,
and under ``block=(n, m)`` at most ``n`` in every block of ``m`` contiguous entries. On a fixed
support the best ``v`` minimising ``f(v) = (w - v)ᵀ Q (w - v)`` is a least-squares refit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.linalg

from prunescope.align.prune import block_shape

Block = tuple[int, int] | None

_ENUMERATION_BATCH = 4096


# --------------------------------------------------------------------------- validation


def _check_row(w: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(w, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"w must be a 1-D row of W1, got shape {w.shape}.")
    if Q.shape != (w.size, w.size):
        raise ValueError(f"Q must be ({w.size}, {w.size}) to match w, got shape {Q.shape}.")
    return w, Q


def _check_keep(keep: int) -> int:
    if int(keep) != keep or keep < 0:
        raise ValueError(f"keep must be a non-negative integer, got {keep!r}.")
    return int(keep)


# --------------------------------------------------------------------------- supports


def max_support_size(d: int, keep: int, block: Block = None) -> int:
    """Size of a maximal feasible support: ``min(keep, d)``, or ``min(keep, n * d / m)``."""
    keep = _check_keep(keep)
    shape = block_shape(d, block)
    capacity = d if shape is None else shape[0] * (d // shape[1])
    return min(keep, capacity)


def is_feasible_support(support: np.ndarray, keep: int, block: Block = None) -> bool:
    """Whether a bool support has at most ``keep`` entries and respects the block limit."""
    support = np.asarray(support, dtype=bool)
    shape = block_shape(support.size, block)
    if support.sum() > keep:
        return False
    if shape is None:
        return True
    n, m = shape
    return bool((support.reshape(-1, m).sum(axis=1) <= n).all())


def count_supports(d: int, keep: int, block: Block = None) -> int:
    """How many maximal feasible supports :func:`enumerate_best_subset` visits."""
    k = max_support_size(d, keep, block)
    shape = block_shape(d, block)
    if shape is None:
        return math.comb(d, k)
    n, m = shape
    # ways[j] = number of ways to place j non-zeros in the blocks seen so far
    ways = [1] + [0] * k
    for _ in range(d // m):
        ways = [
            sum(math.comb(m, c) * ways[j - c] for c in range(min(n, j) + 1)) for j in range(k + 1)
        ]
    return ways[k]


def _block_supports(blocks: Sequence[range], k: int, n: int) -> Iterator[tuple[int, ...]]:
    if not blocks:
        if k == 0:
            yield ()
        return
    first, rest = blocks[0], blocks[1:]
    room_after = n * len(rest)
    for c in range(max(0, k - room_after), min(n, len(first), k) + 1):
        for chosen in itertools.combinations(first, c):
            for tail in _block_supports(rest, k - c, n):
                yield chosen + tail


def _iter_supports(d: int, k: int, block: tuple[int, int] | None) -> Iterator[tuple[int, ...]]:
    """Every feasible support of size ``k`` as sorted index tuples, in lexicographic order."""
    if block is None:
        return itertools.combinations(range(d), k)
    n, m = block
    return _block_supports([range(s, s + m) for s in range(0, d, m)], k, n)


# --------------------------------------------------------------------------- refits


def _objective(w: np.ndarray, Q: np.ndarray, v: np.ndarray) -> float:
    r = w - v
    return max(float(r @ Q @ r), 0.0)


def refit_on_support(w: np.ndarray, Q: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, float]:
    """Best ``v`` supported on the bool ``support`` and its objective ``f(v)``.

    ``v_S = Q_SS⁻¹ (Q w)_S`` by a Cholesky solve, or by least squares when ``Q_SS`` is singular.
    """
    w, Q = _check_row(w, Q)
    support = np.asarray(support, dtype=bool)
    if support.shape != w.shape:
        raise ValueError(f"support must have shape {w.shape}, got {support.shape}.")
    S = np.flatnonzero(support)
    v = np.zeros_like(w)
    if S.size:
        Q_SS = Q[np.ix_(S, S)]
        rhs = Q[S] @ w
        try:
            v[S] = scipy.linalg.cho_solve(scipy.linalg.cho_factor(Q_SS), rhs)
        except np.linalg.LinAlgError:
            v[S] = np.linalg.lstsq(Q_SS, rhs, rcond=None)[0]
    return v, _objective(w, Q, v)


def feature_refit(W1: np.ndarray, C0: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Refit every row of ``W1`` on its mask to minimise ``‖(W1[i] - v) C0‖²``.

    Scores other methods' masks on the MIP objective. Solved as least squares on ``C0`` itself,
    which is better conditioned than the normal equations in ``Q``.
    """
    W1 = np.asarray(W1, dtype=np.float64)
    C0 = np.asarray(C0, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if W1.ndim != 2 or C0.ndim != 2 or C0.shape[0] != W1.shape[1]:
        raise ValueError(f"W1 (h, d) and C0 (d, d_in) disagree: {W1.shape} and {C0.shape}.")
    if mask.shape != W1.shape:
        raise ValueError(f"mask must have W1's shape {W1.shape}, got {mask.shape}.")
    refit = np.zeros_like(W1)
    targets = W1 @ C0
    for i in range(W1.shape[0]):
        S = np.flatnonzero(mask[i])
        if S.size:
            refit[i, S] = np.linalg.lstsq(C0[S].T, targets[i], rcond=None)[0]
    return refit


def _refit_batch(w: np.ndarray, Q: np.ndarray, supports: np.ndarray) -> np.ndarray:
    """Objective of the refit on each row of ``supports`` (B, k) of indices."""
    rows = np.arange(supports.shape[0])[:, None]
    Q_SS = Q[supports[:, :, None], supports[:, None, :]]
    rhs = (Q @ w)[supports]
    try:
        v_S = np.linalg.solve(Q_SS, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        v_S = np.einsum("bij,bj->bi", np.linalg.pinv(Q_SS, hermitian=True), rhs)
    residual = np.broadcast_to(w, (supports.shape[0], w.size)).copy()
    residual[rows, supports] -= v_S
    # evaluating f directly (not wᵀQw − v·rhs) keeps every value an attainable objective
    objectives = np.einsum("bi,ij,bj->b", residual, Q, residual)
    return np.where(np.isfinite(objectives), objectives, np.inf)


def enumerate_best_subset(
    w: np.ndarray, Q: np.ndarray, keep: int, block: Block = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact optimum ``(mask, weights, objective)`` by visiting every maximal feasible support."""
    w, Q = _check_row(w, Q)
    shape = block_shape(w.size, block)
    k = max_support_size(w.size, keep, block)
    supports = _iter_supports(w.size, k, shape)
    best_objective, best_support = np.inf, next(_iter_supports(w.size, k, shape))
    if k > 0:
        while batch := list(itertools.islice(supports, _ENUMERATION_BATCH)):
            indices = np.asarray(batch, dtype=np.intp)
            objectives = _refit_batch(w, Q, indices)
            i = int(np.argmin(objectives))
            if objectives[i] < best_objective:
                best_objective, best_support = float(objectives[i]), batch[i]
    mask = np.zeros(w.size, dtype=bool)
    mask[list(best_support)] = True
    weights, objective = refit_on_support(w, Q, mask)
    return mask, weights, objective
