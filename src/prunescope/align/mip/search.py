"""Depth-first branch and bound over which entries of a row to drop (leaps and bounds).

Its bound is combinatorial (a smaller support never fits better), so it does not depend on
the conditioning of Q, and the inverse of ``Q_SS`` is downdated from node to node: it needs
Q positive definite. A shared budget of wall-clock time and nodes stops it, keeping a proven
lower bound on the optimum either way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from prunescope.align.mip.heuristics import _warm_start
from prunescope.align.mip.supports import (
    Block,
    _check_keep,
    _check_row,
    is_feasible_support,
    max_support_size,
    refit_on_support,
)
from prunescope.align.prune import block_shape
from prunescope.settings import check_node_limit

_SINGULAR_RELATIVE = 1e-12  # λ_min below this fraction of trace(Q) counts as singular
_PIVOT_RELATIVE = 1e-9  # a downdated pivot below this fraction of its diagonal is rounding


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
    node_limit = check_node_limit(node_limit)
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
