"""The oracle for one neuron and for a whole layer: enumeration when the row is small, the
branch and bound otherwise (SCIP for a singular Q or on request), and worker processes for
the rows of a layer."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from prunescope.align.mip.heuristics import _warm_start
from prunescope.align.mip.improve import _WINDOW, _improve
from prunescope.align.mip.scip import solve_with_scip
from prunescope.align.mip.search import _SINGULAR_RELATIVE, _Budget, _DropSearch, _node_cap
from prunescope.align.mip.supports import (
    Block,
    _check_keep,
    _check_row,
    _iter_supports,
    count_supports,
    enumerate_best_subset,
    max_support_size,
    refit_on_support,
)
from prunescope.align.prune import block_shape
from prunescope.settings import MipSettings

log = logging.getLogger("prunescope")

_DEFAULTS = MipSettings()


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


def _exact_fit(w: np.ndarray, Q: np.ndarray, objective: float) -> bool:
    """Whether the warm start already reproduces w C0 up to rounding (f ≥ 0 proves it optimal)."""
    return objective <= 1e-20 * max(float(w @ Q @ w), np.finfo(float).tiny)


def solve_neuron(
    w: np.ndarray,
    Q: np.ndarray,
    keep: int,
    block: Block = None,
    *,
    settings: MipSettings = _DEFAULTS,
    lam_min: float | None = None,
) -> NeuronSolution:
    """Best sparse row for one neuron: enumeration when small, branch and bound otherwise.

    The search starts from the best 1-swap local optimum of greedy backward elimination,
    forward selection and magnitude starts and gets half of the ``settings``' time limit,
    which bounds the whole solve of the row, warm start included. If it cannot finish,
    :func:`improve_support` (the settings' ``rounds`` and ``seed``) improves its best support
    until three quarters of the time, and a second search from there takes the rest. The node
    limit (None: no limit) bounds the branch-and-bound nodes of the whole solve, the local
    search's window searches included, and is shared out the same way: the first search may
    use nodes up to half of it (rounded up), the local search up to three quarters, the
    second search the rest. Both limits apply and the first one reached stops the phase; a
    solve stopped by its node limit alone is the same on any machine. ``status`` is "optimal"
    when a search covered every support, so that ``objective`` is within the relative ``gap``
    of the optimum, and "timelimit" when a limit stopped it; ``bound`` is a proven lower bound
    on ``f`` either way, and ``nodes`` counts every node visited (never more than the limit).
    A singular Q (no inverse to downdate), or ``solver="scip"``, goes to SCIP's perspective
    model instead, with the node limit as its total node limit. ``lam_min`` (λ_min of Q) may
    be passed to share one eigen-solve across rows.
    """
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
    if count_supports(d, keep, block) <= settings.enumerate_limit:
        mask, _, objective = enumerate_best_subset(w, Q, keep, block)
        return solution(mask, objective, objective, "enumerated", 0, "enumeration")

    warm = _warm_start(w, Q, k, shape)
    objective = refit_on_support(w, Q, warm)[1]
    if _exact_fit(w, Q, objective):
        return solution(warm, objective, objective, "optimal", 0, "greedy")

    lam_min = float(np.linalg.eigvalsh(Q)[0]) if lam_min is None else float(lam_min)
    if settings.solver == "scip" or lam_min <= _SINGULAR_RELATIVE * np.trace(Q):
        mask, bound, status, nodes = solve_with_scip(w, Q, k, shape, warm, settings, lam_min)
        return solution(mask, None, bound, status, nodes, "scip")
    mask, bound, status, nodes = _search_twice(w, Q, k, shape, warm, settings, started)
    return solution(mask, None, bound, status, nodes, "branch-and-bound")


def _search_twice(w, Q, k, shape, warm, settings: MipSettings, started: float):
    """The branch and bound from ``warm`` and, when it cannot finish, the local search and a
    second branch and bound from the local search's support, each phase up to its share of
    the limits of a solve that began at ``started``; returns (mask, bound, status, nodes)."""
    budget = _Budget()

    def phase(share: float) -> _Budget:
        """The budget up to the end of the first ``share`` of both limits."""
        budget.deadline = started + share * settings.time_limit
        budget.node_cap = _node_cap(settings.node_limit, share)
        return budget

    first = _DropSearch(w, Q, k, shape, warm, settings.gap, phase(0.5)).run()
    if first.complete:
        return first.mask, first.bound, "optimal", budget.nodes
    rounds, seed = settings.rounds, settings.seed
    better = _improve(w, Q, first.mask, shape, rounds, _WINDOW, seed, phase(0.75))
    if refit_on_support(w, Q, better)[1] >= first.objective:
        return first.mask, first.bound, "timelimit", budget.nodes
    second = _DropSearch(w, Q, k, shape, better, settings.gap, phase(1.0)).run()
    status = "optimal" if second.complete else "timelimit"
    # both bounds are valid for the optimum, whatever incumbent each search started from
    bound = second.bound if second.complete else max(first.bound, second.bound)
    return second.mask, bound, status, budget.nodes


# --------------------------------------------------------------------------- layer


def solve_layer(
    W1: np.ndarray,
    C0: np.ndarray,
    keep: int,
    block: Block = None,
    *,
    settings: MipSettings = _DEFAULTS,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[NeuronSolution]]:
    """Solve every neuron (row of ``W1``) independently; returns ``(mask, weights, solutions)``.

    With the ``settings``' ``threads`` > 1 the neurons run in that many forked worker
    processes: the search is Python and would hold the GIL in threads. The settings go to
    :func:`solve_neuron`; ``progress`` shows a progress bar over the neurons.
    """
    W1 = np.asarray(W1, dtype=np.float64)
    C0 = np.asarray(C0, dtype=np.float64)
    if W1.ndim != 2 or C0.ndim != 2 or C0.shape[0] != W1.shape[1]:
        raise ValueError(f"W1 (h, d) and C0 (d, d_in) disagree: {W1.shape} and {C0.shape}.")
    block_shape(W1.shape[1], block)
    _check_keep(keep)
    Q = C0 @ C0.T
    lam_min = float(np.linalg.eigvalsh(Q)[0])
    solve = functools.partial(
        solve_neuron, Q=Q, keep=keep, block=block, settings=settings, lam_min=lam_min
    )
    rows = list(W1)

    def tracked(results: Iterator[NeuronSolution]) -> list[NeuronSolution]:
        return list(
            tqdm(results, total=len(rows), desc="MIP neurons", disable=not progress, mininterval=5)
        )

    if settings.threads == 1:
        solutions = tracked(map(solve, rows))
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=settings.threads, mp_context=context) as pool:
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
