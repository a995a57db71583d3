"""Warm starts for the search: greedy backward elimination, forward selection, the magnitude
mask and best-improvement 1-swap local search from each.

Each step is priced in closed form from the inverse of ``Q_SS`` on the current support S,
ridged slightly so that it stays finite when Q is singular.
"""

from __future__ import annotations

import numpy as np

from prunescope.align.mip.supports import (
    Block,
    _check_row,
    max_support_size,
    refit_on_support,
)
from prunescope.align.prune import block_shape, select_mask

_GREEDY_RIDGE = 1e-12  # relative to mean(diag Q): keeps greedy inverses finite when Q is singular


def _ridged(Q: np.ndarray) -> np.ndarray:
    return Q + _GREEDY_RIDGE * max(np.trace(Q) / len(Q), np.finfo(float).tiny) * np.eye(len(Q))


def _block_room(support: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """Bool per entry: its block can take one more non-zero."""
    if shape is None:
        return np.ones(support.size, dtype=bool)
    n, m = shape
    return np.repeat(support.reshape(-1, m).sum(axis=1) < n, m)


def _over_full_blocks(support: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """Bool per entry: its block holds more than ``n`` non-zeros."""
    if shape is None:
        return np.zeros(support.size, dtype=bool)
    n, m = shape
    return np.repeat(support.reshape(-1, m).sum(axis=1) > n, m)


def _backward_elimination(w: np.ndarray, Q: np.ndarray, k: int, shape) -> np.ndarray:
    d = w.size
    Qr = _ridged(Q)
    rhs = Q @ w
    support = np.ones(d, dtype=bool)
    S = np.arange(d)
    inverse = np.linalg.inv(Qr)
    while True:
        over = _over_full_blocks(support, shape)
        if over.any():
            candidates = over[S]
        elif S.size > k:
            candidates = np.ones(S.size, dtype=bool)
        else:
            return support
        v = inverse @ rhs[S]
        # raising f by v_q² / [Q_SS⁻¹]_qq is the exact cost of dropping q with an optimal refit
        cost = np.where(candidates, v**2 / np.diag(inverse), np.inf)
        p = int(np.argmin(cost))
        rest = np.arange(S.size) != p
        inverse = (
            inverse[np.ix_(rest, rest)]
            - np.outer(inverse[rest, p], inverse[p, rest]) / inverse[p, p]
        )
        support[S[p]] = False
        S = S[rest]


def _forward_selection(
    w: np.ndarray, Q: np.ndarray, k: int, shape, start: np.ndarray | None = None
) -> np.ndarray:
    """Grow ``start`` (default empty) to ``k`` entries, each step adding the best single entry."""
    d = w.size
    Qr = _ridged(Q)
    rhs = Q @ w
    support = np.zeros(d, dtype=bool) if start is None else start.copy()
    while support.sum() < k:
        S = np.flatnonzero(support)
        if S.size:
            inverse = np.linalg.inv(Qr[np.ix_(S, S)])
            gradient = rhs - Q[:, S] @ (inverse @ rhs[S])
            schur = np.diag(Qr) - np.einsum("sj,sj->j", Qr[S], inverse @ Qr[S])
        else:
            gradient, schur = rhs, np.diag(Qr).copy()
        allowed = ~support & _block_room(support, shape)
        # the drop in f from adding j with an optimal refit is g_j² / (Schur complement of j)
        gain = np.where(allowed, gradient**2 / np.maximum(schur, np.finfo(float).tiny), -np.inf)
        support[int(np.argmax(gain))] = True
    return support


def greedy_backward(w: np.ndarray, Q: np.ndarray, keep: int, block: Block = None) -> np.ndarray:
    """Feasible bool support from greedy backward elimination (or forward selection if better).

    Backward elimination starts from the full support and repeatedly drops the entry whose
    removal raises ``f`` least, first only inside blocks with too many non-zeros, then anywhere,
    until at most ``keep`` remain. Forward selection adds the entry that lowers ``f`` most. The
    support with the lower refitted objective is returned (backward on ties).
    """
    w, Q = _check_row(w, Q)
    shape = block_shape(w.size, block)
    k = max_support_size(w.size, keep, block)
    backward = _backward_elimination(w, Q, k, shape)
    forward = _forward_selection(w, Q, k, shape)
    if refit_on_support(w, Q, forward)[1] < refit_on_support(w, Q, backward)[1]:
        return forward
    return backward


def _swap_search(
    w: np.ndarray, Q: np.ndarray, support: np.ndarray, shape, max_swaps: int
) -> np.ndarray:
    """Best-improvement 1-swap local search: exchange one kept entry for one dropped entry.

    For every kept entry q the inverse of ``Q_SS`` is downdated without q, which gives the cost
    of dropping q and the gain of every entry that could replace it, all in closed form.
    """
    Qr = _ridged(Q)
    rhs = Q @ w
    support = support.copy()
    diagonal = np.diag(Qr)
    for _ in range(max_swaps):
        S = np.flatnonzero(support)
        if S.size == 0 or S.size == w.size:
            break
        inverse = np.linalg.inv(Qr[np.ix_(S, S)])
        v = inverse @ rhs[S]
        best_change, best_swap = 0.0, None
        for p, q in enumerate(S):
            rest = np.arange(S.size) != p
            kept = S[rest]
            reduced = (
                inverse[np.ix_(rest, rest)]
                - np.outer(inverse[rest, p], inverse[p, rest]) / inverse[p, p]
            )
            drop_cost = v[p] ** 2 / inverse[p, p]
            v_rest = reduced @ rhs[kept]
            gradient = rhs - Qr[:, kept] @ v_rest
            schur = diagonal - np.einsum("sj,sj->j", Qr[kept], reduced @ Qr[kept])
            without = support.copy()
            without[q] = False
            allowed = ~without & _block_room(without, shape)
            allowed[q] = False
            gain = np.where(allowed, gradient**2 / np.maximum(schur, np.finfo(float).tiny), 0.0)
            i = int(np.argmax(gain))
            change = drop_cost - gain[i]
            if change < best_change:
                best_change, best_swap = change, (q, i)
        if best_swap is None:
            break
        candidate = support.copy()
        candidate[best_swap[0]], candidate[best_swap[1]] = False, True
        # accept only a real improvement of the exact refit, so rounding can never cycle
        if refit_on_support(w, Q, candidate)[1] >= refit_on_support(w, Q, support)[1]:
            break
        support = candidate
    return support


def _magnitude_support(w: np.ndarray, k: int, shape) -> np.ndarray:
    """Largest |w_j| first, at most n per block (the per-row magnitude mask)."""
    return select_mask(np.abs(w)[None, :], k, shape)[0]


def _warm_start(w: np.ndarray, Q: np.ndarray, k: int, shape) -> np.ndarray:
    """Best 1-swap local optimum reached from backward, forward and magnitude starts.

    Local optima of best-subset selection are many; three cheap, different starts find far
    better supports than one (under 2:4 blocks often the exact optimum).
    """
    starts = (
        _backward_elimination(w, Q, k, shape),
        _forward_selection(w, Q, k, shape),
        _magnitude_support(w, k, shape),
    )
    improved = [_swap_search(w, Q, start, shape, max_swaps=4 * w.size) for start in starts]
    objectives = [refit_on_support(w, Q, support)[1] for support in improved]
    return improved[int(np.argmin(objectives))]
