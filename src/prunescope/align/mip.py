"""Per-neuron best-subset selection in feature space (paper section 3, appendix A.3 and A.9).

For one row ``w`` of ``W1`` and the shared PSD form ``Q = C0 @ C0.T`` we look for ``v`` with at
most ``keep`` non-zeros (and, under ``block=(n, m)``, at most ``n`` non-zeros in every block of
``m`` contiguous entries) minimising ``f(v) = (w - v)ᵀ Q (w - v) = ‖(w - v) C0‖²``.

Small instances are solved exactly by enumerating every maximal feasible support (on a fixed
support the best ``v`` is a least-squares refit, and a larger support never does worse). Larger
ones go to SCIP through a perspective-strengthened mixed-integer model warm-started with greedy
elimination and swap local search; whatever SCIP returns is polished by an exact refit on its
support and never replaces a better warm start.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
from tqdm import tqdm

from prunescope.align.prune import select_mask

log = logging.getLogger("prunescope")

Block = tuple[int, int] | None

_ENUMERATION_BATCH = 4096
_GREEDY_RIDGE = 1e-12  # relative to mean(diag Q): keeps greedy inverses finite when Q is singular
_SINGULAR_RELATIVE = 1e-12  # λ_min below this fraction of trace(Q) counts as singular


# --------------------------------------------------------------------------- validation


def _check_row(w: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(w, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"w must be a 1-D row of W1, got shape {w.shape}.")
    if Q.shape != (w.size, w.size):
        raise ValueError(f"Q must be ({w.size}, {w.size}) to match w, got shape {Q.shape}.")
    return w, Q


def _check_block(d: int, block: Block) -> tuple[int, int] | None:
    if block is None:
        return None
    if len(block) != 2:
        raise ValueError(f"block must be None or a pair (n, m), got {block!r}.")
    n, m = int(block[0]), int(block[1])
    if not (0 < n <= m) or d % m != 0:
        raise ValueError(f"block {block!r} needs 0 < n <= m and m dividing the row length {d}.")
    return n, m


def _check_keep(keep: int) -> int:
    if int(keep) != keep or keep < 0:
        raise ValueError(f"keep must be a non-negative integer, got {keep!r}.")
    return int(keep)


# --------------------------------------------------------------------------- supports


def max_support_size(d: int, keep: int, block: Block = None) -> int:
    """Size of a maximal feasible support: ``min(keep, d)``, or ``min(keep, n * d / m)``."""
    keep = _check_keep(keep)
    shape = _check_block(d, block)
    capacity = d if shape is None else shape[0] * (d // shape[1])
    return min(keep, capacity)


def is_feasible_support(support: np.ndarray, keep: int, block: Block = None) -> bool:
    """Whether a bool support has at most ``keep`` entries and respects the block limit."""
    support = np.asarray(support, dtype=bool)
    shape = _check_block(support.size, block)
    if support.sum() > keep:
        return False
    if shape is None:
        return True
    n, m = shape
    return bool((support.reshape(-1, m).sum(axis=1) <= n).all())


def count_supports(d: int, keep: int, block: Block = None) -> int:
    """How many maximal feasible supports :func:`enumerate_best_subset` visits."""
    k = max_support_size(d, keep, block)
    shape = _check_block(d, block)
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
    shape = _check_block(w.size, block)
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
    shape = _check_block(w.size, block)
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
    model.setParam("limits/time", float(time_limit))
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


def solve_neuron(
    w: np.ndarray,
    Q: np.ndarray,
    keep: int,
    block: Block = None,
    *,
    time_limit: float = 30.0,
    gap: float = 1e-6,
    enumerate_limit: int = 20000,
    lam_min: float | None = None,
) -> NeuronSolution:
    """Best sparse row for one neuron: enumeration when small, SCIP otherwise.

    SCIP is warm-started with the best 1-swap local optimum from greedy backward elimination,
    forward selection and magnitude starts. Its answer is refitted exactly on its support,
    grown to a maximal support, and never worse than the warm start.
    ``bound`` is the best proven lower bound on ``f``. ``lam_min`` (λ_min of Q) may be passed
    to share one eigen-solve across rows; the smaller of it and this row's own is used.
    """
    started = time.perf_counter()
    w, Q = _check_row(w, Q)
    shape = _check_block(w.size, block)
    keep = _check_keep(keep)
    d = w.size
    k = max_support_size(d, keep, block)

    def solution(mask, weights, objective, bound, status, nodes, solver) -> NeuronSolution:
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
        return solution(mask, np.zeros(d), 0.0, 0.0, "enumerated", 0, "enumeration")
    if count_supports(d, keep, block) <= enumerate_limit:
        mask, weights, objective = enumerate_best_subset(w, Q, keep, block)
        return solution(mask, weights, objective, objective, "enumerated", 0, "enumeration")

    warm = _warm_start(w, Q, k, shape)
    weights, objective = refit_on_support(w, Q, warm)
    if _exact_fit(w, Q, objective):
        return solution(warm, weights, objective, objective, "optimal", 0, "greedy")

    eigenvalues, eigenvectors = np.linalg.eigh(Q)
    own_lam_min = float(eigenvalues[0])
    lam_min = own_lam_min if lam_min is None else min(float(lam_min), own_lam_min)
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
    model, m = _scip_model(form, k, shape, warm, time_limit, gap)
    model.optimizeNogil()
    status = str(model.getStatus())
    bound = float(model.getDualbound()) * f_scale
    nodes = int(model.getNTotalNodes())

    mask = warm
    if model.getNSols() > 0:
        best = model.getBestSol()
        found = np.array([model.getSolVal(best, mj) > 0.5 for mj in m])
        if is_feasible_support(found, keep, block):
            found = _forward_selection(w, Q, k, shape, start=found)
            if refit_on_support(w, Q, found)[1] <= objective:
                mask = found
    weights, objective = refit_on_support(w, Q, mask)
    # f ≥ 0 always; SCIP's outer approximation can report a slightly negative bound
    bound = min(max(bound, 0.0), objective)
    return solution(mask, weights, objective, bound, status, nodes, "scip")


# --------------------------------------------------------------------------- layer


def solve_layer(
    W1: np.ndarray,
    C0: np.ndarray,
    keep: int,
    block: Block = None,
    *,
    time_limit: float = 30.0,
    gap: float = 1e-6,
    enumerate_limit: int = 20000,
    threads: int = 1,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[NeuronSolution]]:
    """Solve every neuron (row of ``W1``) independently; returns ``(mask, weights, solutions)``.

    Neurons run in ``threads`` worker threads (SCIP releases the GIL while it solves).
    """
    W1 = np.asarray(W1, dtype=np.float64)
    C0 = np.asarray(C0, dtype=np.float64)
    if W1.ndim != 2 or C0.ndim != 2 or C0.shape[0] != W1.shape[1]:
        raise ValueError(f"W1 (h, d) and C0 (d, d_in) disagree: {W1.shape} and {C0.shape}.")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    _check_block(W1.shape[1], block)
    _check_keep(keep)
    Q = C0 @ C0.T
    lam_min = float(np.linalg.eigvalsh(Q)[0])

    def solve(i: int) -> NeuronSolution:
        return solve_neuron(
            W1[i], Q, keep, block, time_limit=time_limit, gap=gap,
            enumerate_limit=enumerate_limit, lam_min=lam_min,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=threads) as pool:
        solutions = list(
            tqdm(
                pool.map(solve, range(W1.shape[0])),
                total=W1.shape[0],
                desc="MIP neurons",
                disable=not progress,
                mininterval=5,
            )
        )
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
