"""Per-neuron best-subset selection in feature space (paper section 3, appendix A.3 and A.9).

For one row ``w`` of ``W1`` and the shared PSD form ``Q = C0 @ C0.T`` we look for ``v`` with at
most ``keep`` non-zeros (and, under ``block=(n, m)``, at most ``n`` non-zeros in every block of
``m`` contiguous entries) minimising ``f(v) = (w - v)ᵀ Q (w - v) = ‖(w - v) C0‖²``.

Small instances are solved exactly by enumerating every maximal feasible support (on a fixed
support the best ``v`` is a least-squares refit, and a larger support never does worse). Larger
ones go to a branch and bound of our own over which entries to drop, warm-started with greedy
elimination and swap local search, with a kick-and-window local search between two rounds of it
when the first cannot finish. Its bound is combinatorial (a smaller support never fits better),
so it does not depend on the conditioning of Q. The convex relaxations of the mixed-integer
model do: on trained C0, whose λ_min(Q) is ~1e-5 of its mean diagonal, even the perspective
relaxation with the best diagonal bounds f by well under 1% of the optimum, which left SCIP's
dual bound at 0. SCIP takes a singular Q, which has no inverse to downdate, and every neuron
when asked for with ``solver="scip"`` (the paper's own stack).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
from tqdm import tqdm

from prunescope.align.prune import block_shape, select_mask

log = logging.getLogger("prunescope")

Block = tuple[int, int] | None
SOLVERS = ("branch-and-bound", "scip")

_ENUMERATION_BATCH = 4096
_GREEDY_RIDGE = 1e-12  # relative to mean(diag Q): keeps greedy inverses finite when Q is singular
_SINGULAR_RELATIVE = 1e-12  # λ_min below this fraction of trace(Q) counts as singular
_PIVOT_RELATIVE = 1e-9  # a downdated pivot below this fraction of its diagonal is rounding
_SCIP_INFINITY = 1e20  # SCIP's largest time limit, standing for none
_WINDOW = 20  # entries each round of the local search re-decides exactly


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


# --------------------------------------------------------------------------- greedy warm start


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


# --------------------------------------------------------------------------- branch and bound


def drop_costs(G: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact rise of f from dropping one entry, or one entry after another, from a support.

    ``G`` is ``Q_SS⁻¹`` and ``v`` the refit on the support S, both indexed by S. Dropping j
    raises f by ``v_j² / G_jj``; once j is gone, dropping i raises it further by
    ``(v_i − v_j G_ij / G_jj)² / (G_ii − G_ij² / G_jj)``, the same rule on the downdated inverse.
    Returns ``(single, pair)`` with ``pair[i, j]`` the further rise from i after j and +inf on
    the diagonal. A pair whose downdated pivot is lost to rounding gets 0, which is always a
    valid lower bound.
    """
    diagonal = np.diag(G)
    single = v**2 / diagonal
    ratio = G / diagonal[None, :]
    schur = diagonal[:, None] - G * ratio
    reliable = schur > _PIVOT_RELATIVE * diagonal[:, None]
    pair = np.zeros_like(G)
    np.divide((v[:, None] - ratio * v[None, :]) ** 2, schur, out=pair, where=reliable)
    np.fill_diagonal(pair, np.inf)
    return single, pair


def lookahead_bounds(single: np.ndarray, pair: np.ndarray, r: int) -> np.ndarray:
    """Per free entry j, a lower bound on the rise of f from any r drops that include j.

    Those drops contain j and r − 1 others; the leaf is a subset of dropping j and any one of
    them, so it costs at least ``single[j]`` plus the (r − 1)-th smallest ``pair[:, j]``.
    """
    if r < 2:
        return single.copy()
    return single + np.partition(pair, r - 2, axis=0)[r - 2]


def _check_node_limit(node_limit: int | None) -> int | None:
    if node_limit is None:
        return None
    if isinstance(node_limit, bool) or int(node_limit) != node_limit or node_limit < 1:
        raise ValueError(f"node_limit must be a positive integer or None, got {node_limit!r}.")
    return int(node_limit)


@dataclass
class _Budget:
    """What the searches of one solve may still spend: a wall-clock ``deadline`` (a
    ``time.perf_counter()`` value) and ``node_cap``, the most branch-and-bound nodes visited
    by all of them together. ``nodes`` counts those visited so far. A solve whose node cap
    binds before its deadline does the same work, and finds the same answer, on any machine.
    """

    deadline: float = math.inf
    node_cap: float = math.inf
    nodes: int = 0

    def nodes_left(self) -> bool:
        return self.nodes < self.node_cap

    def spent(self) -> bool:
        return not self.nodes_left() or time.perf_counter() > self.deadline


def _node_cap(node_limit: int | None, share: float) -> float:
    """Nodes that the first ``share`` of a solve may use in all (rounded up, so that a
    positive share of a positive limit always leaves the first search its root)."""
    return math.inf if node_limit is None else math.ceil(share * node_limit)


@dataclass
class SearchResult:
    """Best support a branch and bound found, its objective, a proven lower bound on the
    optimum, the nodes it visited and whether it covered every support."""

    mask: np.ndarray
    objective: float
    bound: float
    nodes: int
    complete: bool


class _DropSearch:
    """Depth-first branch and bound over which entries of w to drop (leaps and bounds).

    A node has dropped the entries in ``dropped``, keeps those outside ``free`` and must still
    drop ``r`` of ``free``. Its refit f on all that is not dropped bounds every leaf below it
    (a smaller support never fits better); a leaf drops r free entries, each of which costs at
    least its :func:`lookahead_bounds`, so f plus the r-th smallest of those is a bound too.
    Children drop the free entries in order of decreasing bound, each child keeping the entries
    its elder siblings dropped, so that every support is visited once (on trained DNF nets this
    order visits far fewer nodes than cheapest-first, measured). The inverse of ``Q_SS`` and the
    refit are downdated in O(d²) per child, and the last two drops are priced for all pairs at
    once.

    A node is one call of ``_visit`` (leaves and the pairs priced by ``_last_two`` are not
    nodes); each is charged to the shared ``budget``. The search stops at the budget's
    deadline, or when the next node would exceed its node cap, keeping a valid bound on what
    it left unexplored either way.
    """

    def __init__(self, w, Q, k, shape, incumbent, gap, budget: _Budget) -> None:
        self.w, self.Q, self.gap, self.budget = w, Q, gap, budget
        self.d, self.k, self.shape = w.size, k, shape
        if shape is not None:
            self.block_of = np.arange(self.d) // shape[1]
            self.blocks = self.d // shape[1]
            self.block_drops = shape[1] - shape[0]
        self.best_mask = incumbent.copy()
        self.best = refit_on_support(w, Q, incumbent)[1]
        self.nodes = 0
        self.stopped = False  # out of time or out of nodes before covering every support
        self.open_bound = np.inf  # least bound over subtrees left unexplored when stopped
        self.cut_bound = np.inf  # least bound over subtrees cut only thanks to the gap

    def run(self, window: np.ndarray | None = None) -> SearchResult:
        """Search every support that agrees with the incumbent outside the bool ``window``
        (default: everywhere). ``bound`` bounds the optimum only for a search everywhere."""
        d = self.d
        free = np.ones(d, dtype=bool) if window is None else np.asarray(window, dtype=bool)
        dropped = ~self.best_mask & ~free
        r = (d - self.k) - int(dropped.sum())
        if r > 0:
            support = np.flatnonzero(~dropped)
            inverse = np.zeros((d, d))
            block = np.linalg.inv(self.Q[np.ix_(support, support)])
            inverse[np.ix_(support, support)] = (block + block.T) / 2
            refit, f = refit_on_support(self.w, self.Q, ~dropped)
            self._visit(inverse, refit, f, free, dropped, r)
            if self.stopped and self.nodes == 0:
                # no node left even for the root: f itself bounds every support below it
                self.open_bound = min(self.open_bound, f)
        bound = min(self.best, self.open_bound, self.cut_bound)
        return SearchResult(self.best_mask, self.best, bound, self.nodes, not self.stopped)

    def _threshold(self) -> float:
        return self.best * (1.0 - self.gap)

    def _cut(self, value: float) -> None:
        if value < self.best:
            self.cut_bound = min(self.cut_bound, value)

    def _needs(self, dropped: np.ndarray) -> np.ndarray | None:
        """Drops each block still needs to hold at most n non-zeros (None without blocks)."""
        if self.shape is None:
            return None
        done = np.bincount(self.block_of[dropped], minlength=self.blocks)
        return np.maximum(self.block_drops - done, 0)

    def _rest_bound(self, bounds, entries, r, needs) -> float:
        """Least rise of f from r drops among the free ``entries`` (with their ``bounds``),
        or inf when no feasible choice of r drops is left."""
        if r > entries.size:
            return np.inf
        value = float(np.partition(bounds, r - 1)[r - 1])
        if needs is not None and needs.any():
            by_entry = np.full(self.d, np.inf)
            by_entry[entries] = bounds
            table = np.sort(by_entry.reshape(self.blocks, -1), axis=1)
            needy = np.flatnonzero(needs)
            # a block that must still drop c entries pays at least its c-th cheapest
            value = max(value, float(table[needy, needs[needy] - 1].max()))
            if needs.sum() > r:
                return np.inf
        return value

    def _visit(self, G, v, f, free, dropped, r) -> None:
        if not self.budget.nodes_left():
            # the caller bounds this subtree with the rest it leaves unexplored
            self.stopped = True
            return
        self.nodes += 1
        self.budget.nodes += 1
        index = np.flatnonzero(free)
        single, pair = drop_costs(G[np.ix_(index, index)], v[index])
        bounds = lookahead_bounds(single, pair, r)
        needs = self._needs(dropped)
        bound = f + self._rest_bound(bounds, index, r, needs)
        if time.perf_counter() > self.budget.deadline:
            self.stopped = True
            self.open_bound = min(self.open_bound, bound)
            return
        if bound >= self._threshold():
            self._cut(bound)
            return
        if index.size == r:
            self._leaf(dropped | free, f)
            return
        if r == 2:
            self._last_two(index, single, pair, f, dropped, needs)
            return
        available = np.ones(index.size, dtype=bool)
        for position in np.argsort(-bounds, kind="stable"):
            j = index[position]
            available[position] = False
            # the child drops j and r − 1 of the younger siblings: price it on those alone
            younger = pair[available, position]
            child_bound = f + single[position]
            if r > 1:
                enough = younger.size >= r - 1
                child_bound += np.partition(younger, r - 2)[r - 2] if enough else np.inf
            if child_bound >= self._threshold():
                self._cut(child_bound)
            elif self._may_drop(j, needs, r, index[available]):
                self._child(G, v, f, dropped, r, j, index[available])
                if self.stopped:
                    # the unexplored rest: this child's subtree and the younger siblings
                    available[position] = True
                    rest = self._rest_bound(bounds[available], index[available], r, needs)
                    self.open_bound = min(self.open_bound, f + rest)
                    return
            rest = f + self._rest_bound(bounds[available], index[available], r, needs)
            if rest >= self._threshold():
                self._cut(rest)
                return

    def _last_two(self, index, single, pair, f, dropped, needs) -> None:
        """Every leaf of a node with two drops left, priced at once from its pair costs."""
        first, second = np.triu_indices(index.size, k=1)
        values = f + single[second] + pair[first, second]
        if needs is not None and needs.any():
            blocks_first = self.block_of[index[first]]
            blocks_second = self.block_of[index[second]]
            covered = np.where(
                blocks_first == blocks_second,
                np.minimum(needs[blocks_first], 2),
                np.minimum(needs[blocks_first], 1) + np.minimum(needs[blocks_second], 1),
            )
            values = np.where(covered == needs.sum(), values, np.inf)
        for t in np.argsort(values):
            if values[t] >= self._threshold():
                self._cut(values[t])
                return
            leaf = dropped.copy()
            leaf[index[[first[t], second[t]]]] = True
            self._leaf(leaf, values[t])

    def _may_drop(self, j, needs, r, entries) -> bool:
        """Whether dropping j from the free ``entries`` leaves a feasible way to finish."""
        if needs is None:
            return True
        after = needs.copy()
        after[self.block_of[j]] = max(after[self.block_of[j]] - 1, 0)
        if after.sum() > r - 1:
            return False
        left = np.bincount(self.block_of[entries[entries != j]], minlength=self.blocks)
        return bool((left >= after).all())

    def _child(self, G, v, f, dropped, r, j, child_free) -> None:
        column = G[:, j]
        pivot = G[j, j]
        child_f = f + v[j] ** 2 / pivot
        child_dropped = dropped.copy()
        child_dropped[j] = True
        if r == 1:
            self._leaf(child_dropped, child_f)
            return
        free = np.zeros(self.d, dtype=bool)
        free[child_free] = True
        child_G = G - np.outer(column, column) / pivot
        child_v = v - column * (v[j] / pivot)
        self._visit(child_G, child_v, child_f, free, child_dropped, r - 1)

    def _leaf(self, dropped: np.ndarray, estimate: float) -> None:
        if estimate >= self._threshold():
            self._cut(estimate)
            return
        objective = refit_on_support(self.w, self.Q, ~dropped)[1]
        if objective < self.best:
            self.best, self.best_mask = objective, ~dropped


def branch_and_bound(
    w: np.ndarray,
    Q: np.ndarray,
    keep: int,
    block: Block = None,
    *,
    incumbent: np.ndarray | None = None,
    time_limit: float = np.inf,
    node_limit: int | None = None,
    gap: float = 0.0,
) -> SearchResult:
    """Best support by depth-first branch and bound on which entries to drop (Q positive definite).

    Starts from ``incumbent`` (default: the greedy warm start) and stops at ``time_limit``
    seconds or once it has visited ``node_limit`` nodes (None: no limit), whichever comes first.
    ``complete`` means every support was covered, so ``objective`` is within relative ``gap``
    of the optimum; ``bound`` is a proven lower bound on the optimum either way.
    """
    node_limit = _check_node_limit(node_limit)
    w, Q = _check_row(w, Q)
    shape = block_shape(w.size, block)
    k = max_support_size(w.size, _check_keep(keep), block)
    if incumbent is None:
        incumbent = _warm_start(w, Q, k, shape)
    incumbent = np.asarray(incumbent, dtype=bool)
    if incumbent.sum() != k or not is_feasible_support(incumbent, keep, block):
        raise ValueError(f"incumbent must be a feasible support of {k} entries.")
    if np.linalg.eigvalsh(Q)[0] <= _SINGULAR_RELATIVE * np.trace(Q):
        raise ValueError("branch_and_bound needs a positive definite Q.")
    budget = _Budget(time.perf_counter() + time_limit, _node_cap(node_limit, 1.0))
    if w.size == k:
        objective = refit_on_support(w, Q, incumbent)[1]
        return SearchResult(incumbent, objective, objective, 0, True)
    return _DropSearch(w, Q, k, shape, incumbent, gap, budget).run()


# --------------------------------------------------------------------------- local improvement


def _kicked(support: np.ndarray, shape, swaps: int, rng: np.random.Generator) -> np.ndarray:
    """``support`` with ``swaps`` kept entries exchanged for dropped ones, each exchange
    inside one block under a block limit, so that the support stays feasible."""
    support = support.copy()
    if shape is None:
        kept, dropped = np.flatnonzero(support), np.flatnonzero(~support)
        swaps = min(swaps, kept.size, dropped.size)
        support[rng.choice(kept, swaps, replace=False)] = False
        support[rng.choice(dropped, swaps, replace=False)] = True
        return support
    rows = support.reshape(-1, shape[1])
    mixed = np.flatnonzero(rows.any(axis=1) & ~rows.all(axis=1))
    for b in rng.choice(mixed, min(swaps, mixed.size), replace=False):
        rows[b, rng.choice(np.flatnonzero(rows[b]))] = False
        rows[b, rng.choice(np.flatnonzero(~rows[b]))] = True
    return support


def _random_window(support: np.ndarray, shape, size: int, rng: np.random.Generator) -> np.ndarray:
    """Bool mask of about ``size`` entries to decide afresh: half kept and half dropped, or
    whole blocks under a block limit."""
    window = np.zeros(support.size, dtype=bool)
    if shape is None:
        kept, dropped = np.flatnonzero(support), np.flatnonzero(~support)
        half = size // 2
        window[rng.choice(kept, min(half, kept.size), replace=False)] = True
        window[rng.choice(dropped, min(half, dropped.size), replace=False)] = True
        return window
    m = shape[1]
    blocks = rng.choice(support.size // m, min(max(size // m, 1), support.size // m), replace=False)
    window[(blocks[:, None] * m + np.arange(m)).ravel()] = True
    return window


def improve_support(
    w: np.ndarray,
    Q: np.ndarray,
    support: np.ndarray,
    block: Block = None,
    *,
    rounds: int = 100,
    window: int = _WINDOW,
    seed: int = 0,
    deadline: float = np.inf,
    node_limit: int | None = None,
) -> np.ndarray:
    """A feasible support of the same size never worse than ``support`` (Q positive definite).

    Iterated local search: every other round kicks the best support by a few random swaps and
    descends by 1-swaps; every round then re-decides a random ``window`` of entries exactly by
    branch and bound with the rest held fixed. Stops after ``rounds``, at ``deadline`` (a
    ``time.perf_counter()`` value) or once the window searches have visited ``node_limit``
    nodes in all (None: no limit); deterministic given ``seed`` when the deadline is not met.
    Best-subset selection on an ill-conditioned Q has many local optima far apart, which
    the kicks reach and the exact windows polish.
    """
    w, Q = _check_row(w, Q)
    shape = block_shape(w.size, block)
    budget = _Budget(deadline, _node_cap(_check_node_limit(node_limit), 1.0))
    return _improve(w, Q, support, shape, rounds, window, seed, budget)


def _improve(w, Q, support, shape, rounds, window, seed, budget: _Budget) -> np.ndarray:
    """:func:`improve_support` drawing its window searches' nodes from a shared ``budget``."""
    best = np.asarray(support, dtype=bool).copy()
    k = int(best.sum())
    if best.shape != w.shape or not is_feasible_support(best, k, shape):
        raise ValueError(f"support must be a feasible bool mask of shape {w.shape}.")
    rng = np.random.default_rng(seed)
    best_f = refit_on_support(w, Q, best)[1]
    for round_ in range(rounds):
        if budget.spent() or k in (0, w.size):
            break
        candidate = best
        if round_ % 2:
            kicked = _kicked(best, shape, int(rng.integers(2, 5)), rng)
            candidate = _swap_search(w, Q, kicked, shape, max_swaps=4 * w.size)
        search = _DropSearch(w, Q, k, shape, candidate, 0.0, budget)
        found = search.run(_random_window(candidate, shape, window, rng))
        if found.objective < best_f:
            best, best_f = found.mask, found.objective
    return best


# --------------------------------------------------------------------------- SCIP


@dataclass
class NeuronSolution:
    """One neuron's sparse row and how it was certified."""

    mask: np.ndarray
    weights: np.ndarray
    objective: float
    bound: float
    gap: float
    status: str
    seconds: float
    nodes: int
    solver: str


def _relative_gap(objective: float, bound: float) -> float:
    return max(objective - bound, 0.0) / max(abs(objective), np.finfo(float).tiny)


@dataclass
class _Formulation:
    """Row data for the SCIP model, in units where ‖w‖ = 1 and the warm start has f = 1."""

    w: np.ndarray
    Q: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    lam_min: float


def _big_m(form: _Formulation, warm_f: float) -> np.ndarray | None:
    """Valid bounds on |v_j| at an optimum, or None when Q is singular.

    An optimal v* has (w − v*)ᵀ Q (w − v*) ≤ f_warm, an ellipsoid whose extent along e_j is
    sqrt(f_warm [Q⁻¹]_jj). That is never looser than the sphere bound sqrt(f_warm / λ_min).
    The 1% slack covers rounding in the eigen-solve of an ill-conditioned Q.
    """
    lam = form.eigenvalues
    if form.lam_min <= _SINGULAR_RELATIVE * lam.sum():
        return None
    inverse_diagonal = (form.eigenvectors**2) @ (1.0 / np.maximum(lam, form.lam_min))
    sphere = math.sqrt(warm_f / form.lam_min)
    return np.abs(form.w) + 1.01 * np.minimum(np.sqrt(warm_f * inverse_diagonal), sphere)


def _scip_model(
    form: _Formulation,
    k: int,
    shape: tuple[int, int] | None,
    warm: np.ndarray,
    time_limit: float,
    node_limit: int | None,
    gap: float,
):
    """Perspective MIP for one row; returns the model and its indicator variables m.

    With Q = δI + R (R ⪰ 0) and R = L Lᵀ, f(v) = ‖y‖² + δ‖w − v‖² where y = Lᵀ(w − v). The
    term δ v_j² is replaced by δ s_j with the rotated cone v_j² ≤ s_j m_j, which is tight on
    integral m and strengthens every relaxation. Writing the epigraph t ≥ ‖y‖² over the residual
    (not vᵀRv − 2 (Qw)ᵀv) keeps t of the order of f, so SCIP's absolute tolerances stay
    meaningful, and makes convexity explicit for SCIP.
    """
    from pyscipopt import SCIP_PARAMSETTING, Model, quicksum

    w, d = form.w, form.w.size
    warm_v, warm_f = refit_on_support(w, form.Q, warm)
    big_m = _big_m(form, warm_f)
    delta = 0.0 if big_m is None else 0.999 * form.lam_min
    factor = form.eigenvectors * np.sqrt(np.maximum(form.eigenvalues - delta, 0.0))

    model = Model("neuron")
    model.hideOutput()
    # the swap-searched warm start is rarely beaten by SCIP's heuristics, and cut separation
    # cost more time per node than it saved nodes on these dense quadratics (measured)
    model.setHeuristics(SCIP_PARAMSETTING.OFF)
    model.setSeparating(SCIP_PARAMSETTING.OFF)
    model.setParam("display/verblevel", 0)
    model.setParam("limits/time", min(float(time_limit), _SCIP_INFINITY))
    if node_limit is not None:
        model.setParam("limits/totalnodes", int(node_limit))
    model.setParam("limits/gap", float(gap))
    model.setParam("randomization/randomseedshift", 0)
    model.setParam("parallel/maxnthreads", 1)
    model.setParam("lp/threads", 1)

    bounds = [None] * d if big_m is None else [float(b) for b in big_m]
    v = [model.addVar(f"v{j}", lb=None if b is None else -b, ub=b) for j, b in enumerate(bounds)]
    m = [model.addVar(f"m{j}", vtype="B") for j in range(d)]
    for j in range(d):
        model.chgVarBranchPriority(m[j], 1)
        if big_m is None:
            model.addConsIndicator(v[j] <= 0.0, binvar=m[j], activeone=False)
            model.addConsIndicator(-v[j] <= 0.0, binvar=m[j], activeone=False)
        else:
            model.addCons(v[j] <= bounds[j] * m[j])
            model.addCons(-v[j] <= bounds[j] * m[j])
    model.addCons(quicksum(m) <= k)
    if shape is not None:
        n, size = shape
        for start in range(0, d, size):
            model.addCons(quicksum(m[start : start + size]) <= n)

    columns = [i for i in range(d) if np.any(factor[:, i] != 0.0)]
    y = [model.addVar(f"y{i}", lb=None, ub=None) for i in columns]
    for yi, i in zip(y, columns, strict=True):
        model.addCons(
            yi == float(factor[:, i] @ w) - quicksum(float(factor[j, i]) * v[j] for j in range(d))
        )
    t = model.addVar("t", lb=0.0, ub=None)
    model.addCons(t >= quicksum(yi * yi for yi in y))
    objective = t
    s = []
    if delta > 0.0:
        s = [model.addVar(f"s{j}", lb=0.0, ub=float(big_m[j] ** 2)) for j in range(d)]
        for j in range(d):
            model.addCons(v[j] * v[j] <= s[j] * m[j])
        # δ‖w − v‖² = δ‖w‖² − 2δ wᵀv + δ Σ v_j², with v_j² lifted to s_j
        linear = quicksum(2.0 * delta * float(w[j]) * v[j] for j in range(d))
        objective = t + delta * quicksum(s) - linear
    model.setObjective(objective)
    # after setObjective, which clears any earlier offset
    model.addObjoffset(delta * float(w @ w))

    solution = model.createSol()
    for j in range(d):
        model.setSolVal(solution, v[j], float(warm_v[j]))
        model.setSolVal(solution, m[j], float(warm[j]))
        if s:
            model.setSolVal(solution, s[j], float(warm_v[j] ** 2))
    warm_y = factor[:, columns].T @ (w - warm_v)
    for yi, value in zip(y, warm_y, strict=True):
        model.setSolVal(solution, yi, float(value))
    model.setSolVal(solution, t, float(warm_y @ warm_y))
    if not model.addSol(solution):
        log.warning("SCIP rejected the greedy warm start; solving without it.")
    return model, m


def _exact_fit(w: np.ndarray, Q: np.ndarray, objective: float) -> bool:
    """Whether the warm start already reproduces w C0 up to rounding (f ≥ 0 proves it optimal)."""
    return objective <= 1e-20 * max(float(w @ Q @ w), np.finfo(float).tiny)


def _solve_with_scip(w, Q, k, shape, warm, time_limit, node_limit, gap, lam_min):
    """SCIP on the perspective model (indicator constraints when Q is singular), warm-started;
    returns (mask, bound, status, nodes) with the mask never worse than ``warm``."""
    objective = refit_on_support(w, Q, warm)[1]
    eigenvalues, eigenvectors = np.linalg.eigh(Q)
    lam_min = min(lam_min, float(eigenvalues[0]))
    # SCIP's tolerances are absolute: solve with ‖w‖ = 1 and the warm start's f = 1
    w_scale = float(np.linalg.norm(w))
    f_scale = max(objective, 1e-9 * float(w @ Q @ w))
    q_scale = f_scale / w_scale**2
    form = _Formulation(
        w=w / w_scale,
        Q=Q / q_scale,
        eigenvalues=eigenvalues / q_scale,
        eigenvectors=eigenvectors,
        lam_min=lam_min / q_scale,
    )
    model, m = _scip_model(form, k, shape, warm, time_limit, node_limit, gap)
    model.optimizeNogil()
    status = str(model.getStatus())
    if status in ("nodelimit", "totalnodelimit"):  # did not finish, the same as a time-out
        status = "timelimit"
    bound = float(model.getDualbound()) * f_scale
    nodes = int(model.getNTotalNodes())
    mask = warm
    if model.getNSols() > 0:
        best = model.getBestSol()
        found = np.array([model.getSolVal(best, mj) > 0.5 for mj in m])
        if is_feasible_support(found, k, shape):
            found = _forward_selection(w, Q, k, shape, start=found)
            if refit_on_support(w, Q, found)[1] <= objective:
                mask = found
    return mask, bound, status, nodes


def solve_neuron(
    w: np.ndarray,
    Q: np.ndarray,
    keep: int,
    block: Block = None,
    *,
    time_limit: float = 30.0,
    node_limit: int | None = None,
    gap: float = 1e-6,
    enumerate_limit: int = 20000,
    lam_min: float | None = None,
    rounds: int = 100,
    seed: int = 0,
    solver: str = "branch-and-bound",
) -> NeuronSolution:
    """Best sparse row for one neuron: enumeration when small, branch and bound otherwise.

    The search starts from the best 1-swap local optimum of greedy backward elimination,
    forward selection and magnitude starts and gets half of ``time_limit``, which bounds the
    whole solve of the row, warm start included. If it cannot finish, :func:`improve_support`
    (``rounds``, ``seed``) improves its best support until three quarters of the time, and a
    second search from there takes the rest. ``node_limit`` (None: no limit) bounds the
    branch-and-bound nodes of the whole solve, the local search's window searches included,
    and is shared out the same way: the first search may use nodes up to half of it (rounded
    up), the local search up to three quarters, the second search the rest. Both limits apply
    and the first one reached stops the phase; a solve stopped by its node limit alone is the
    same on any machine. ``status`` is "optimal" when a search covered every support, so that
    ``objective`` is within relative ``gap`` of the optimum, and "timelimit" when a limit
    stopped it; ``bound`` is a proven lower bound on ``f`` either way, and ``nodes`` counts
    every node visited (never more than ``node_limit``).
    A singular Q (no inverse to downdate), or ``solver="scip"``, goes to SCIP's perspective
    model instead, with ``node_limit`` as its total node limit. ``lam_min`` (λ_min of Q) may be
    passed to share one eigen-solve across rows.
    """
    if solver not in SOLVERS:
        raise ValueError(f"MIP solver {solver!r} is not one of {SOLVERS}")
    node_limit = _check_node_limit(node_limit)
    started = time.perf_counter()
    w, Q = _check_row(w, Q)
    shape = block_shape(w.size, block)
    keep = _check_keep(keep)
    d = w.size
    k = max_support_size(d, keep, block)

    def solution(mask, objective, bound, status, nodes, solver) -> NeuronSolution:
        weights, refitted = refit_on_support(w, Q, mask)
        objective = refitted if objective is None else objective
        # f ≥ 0 always; a solver's outer approximation can report a slightly negative bound
        bound = min(max(bound, 0.0), objective)
        return NeuronSolution(
            mask=mask,
            weights=weights,
            objective=objective,
            bound=bound,
            gap=_relative_gap(objective, bound),
            status=status,
            seconds=time.perf_counter() - started,
            nodes=nodes,
            solver=solver,
        )

    if not w.any():
        mask = np.zeros(d, dtype=bool)
        mask[list(next(_iter_supports(d, k, shape)))] = True
        return solution(mask, 0.0, 0.0, "enumerated", 0, "enumeration")
    if count_supports(d, keep, block) <= enumerate_limit:
        mask, _, objective = enumerate_best_subset(w, Q, keep, block)
        return solution(mask, objective, objective, "enumerated", 0, "enumeration")

    warm = _warm_start(w, Q, k, shape)
    objective = refit_on_support(w, Q, warm)[1]
    if _exact_fit(w, Q, objective):
        return solution(warm, objective, objective, "optimal", 0, "greedy")

    lam_min = float(np.linalg.eigvalsh(Q)[0]) if lam_min is None else float(lam_min)
    if solver == "scip" or lam_min <= _SINGULAR_RELATIVE * np.trace(Q):
        found = _solve_with_scip(w, Q, k, shape, warm, time_limit, node_limit, gap, lam_min)
        return solution(found[0], None, found[1], found[2], found[3], "scip")

    budget = _Budget()

    def phase(share: float) -> _Budget:
        """The budget up to the end of the first ``share`` of both limits."""
        budget.deadline = started + share * time_limit
        budget.node_cap = _node_cap(node_limit, share)
        return budget

    first = _DropSearch(w, Q, k, shape, warm, gap, phase(0.5)).run()
    if first.complete:
        return solution(first.mask, None, first.bound, "optimal", budget.nodes, "branch-and-bound")
    better = _improve(w, Q, first.mask, shape, rounds, _WINDOW, seed, phase(0.75))
    if refit_on_support(w, Q, better)[1] >= first.objective:
        return solution(
            first.mask, None, first.bound, "timelimit", budget.nodes, "branch-and-bound"
        )
    second = _DropSearch(w, Q, k, shape, better, gap, phase(1.0)).run()
    status = "optimal" if second.complete else "timelimit"
    # both bounds are valid for the optimum, whatever incumbent each search started from
    bound = second.bound if second.complete else max(first.bound, second.bound)
    return solution(second.mask, None, bound, status, budget.nodes, "branch-and-bound")


# --------------------------------------------------------------------------- layer


def solve_layer(
    W1: np.ndarray,
    C0: np.ndarray,
    keep: int,
    block: Block = None,
    *,
    time_limit: float = 30.0,
    node_limit: int | None = None,
    gap: float = 1e-6,
    enumerate_limit: int = 20000,
    threads: int = 1,
    progress: bool = True,
    rounds: int = 100,
    seed: int = 0,
    solver: str = "branch-and-bound",
) -> tuple[np.ndarray, np.ndarray, list[NeuronSolution]]:
    """Solve every neuron (row of ``W1``) independently; returns ``(mask, weights, solutions)``.

    With ``threads`` > 1 the neurons run in that many forked worker processes: the search is
    Python and would hold the GIL in threads. The other arguments go to :func:`solve_neuron`.
    """
    W1 = np.asarray(W1, dtype=np.float64)
    C0 = np.asarray(C0, dtype=np.float64)
    if W1.ndim != 2 or C0.ndim != 2 or C0.shape[0] != W1.shape[1]:
        raise ValueError(f"W1 (h, d) and C0 (d, d_in) disagree: {W1.shape} and {C0.shape}.")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    block_shape(W1.shape[1], block)
    _check_keep(keep)
    _check_node_limit(node_limit)
    Q = C0 @ C0.T
    solve = functools.partial(
        solve_neuron, Q=Q, keep=keep, block=block, time_limit=time_limit,
        node_limit=node_limit, gap=gap, enumerate_limit=enumerate_limit,
        lam_min=float(np.linalg.eigvalsh(Q)[0]), rounds=rounds, seed=seed, solver=solver,
    )  # fmt: skip
    rows = list(W1)

    def tracked(results: Iterator[NeuronSolution]) -> list[NeuronSolution]:
        return list(
            tqdm(results, total=len(rows), desc="MIP neurons", disable=not progress, mininterval=5)
        )

    if threads == 1:
        solutions = tracked(map(solve, rows))
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=threads, mp_context=context) as pool:
            solutions = tracked(pool.map(solve, rows))
    mask = np.stack([s.mask for s in solutions])
    weights = np.stack([s.weights for s in solutions])
    statuses = pd.Series([s.status for s in solutions]).value_counts().to_dict()
    log.info("MIP layer solved: %s", statuses)
    return mask, weights, solutions


def solutions_frame(solutions: Sequence[NeuronSolution]) -> pd.DataFrame:
    """One row per neuron: status, solver, objective, bound, gap, seconds, nodes, non-zeros."""
    return pd.DataFrame(
        {
            "neuron": np.arange(len(solutions)),
            "status": [s.status for s in solutions],
            "solver": [s.solver for s in solutions],
            "objective": [s.objective for s in solutions],
            "bound": [s.bound for s in solutions],
            "gap": [s.gap for s in solutions],
            "seconds": [s.seconds for s in solutions],
            "nodes": [s.nodes for s in solutions],
            "nonzeros": [int(s.mask.sum()) for s in solutions],
        }
    )
