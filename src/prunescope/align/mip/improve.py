"""Iterated local search between two rounds of the branch and bound: random kicks, 1-swap
descent and exact re-decisions of small windows of entries with the rest held fixed."""

from __future__ import annotations

import numpy as np

from prunescope.align.mip.heuristics import _swap_search
from prunescope.align.mip.search import _Budget, _DropSearch, _node_cap
from prunescope.align.mip.supports import (
    Block,
    _check_row,
    is_feasible_support,
    refit_on_support,
)
from prunescope.align.prune import block_shape
from prunescope.settings import check_node_limit

_WINDOW = 20  # entries each round of the local search re-decides exactly


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
    budget = _Budget(deadline, _node_cap(check_node_limit(node_limit), 1.0))
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
