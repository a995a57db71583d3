"""SCIP on the perspective model of one row (pyscipopt), for a singular Q, which has no
inverse to downdate, and for every row under ``solver="scip"`` (the paper's own stack).

The convex relaxations of the mixed-integer model depend on the conditioning of Q: on trained
C0, whose λ_min(Q) is ~1e-5 of its mean diagonal, even the perspective relaxation with the
best diagonal bounds f by well under 1% of the optimum, which left SCIP's dual bound at 0.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from prunescope.align.mip.heuristics import _forward_selection
from prunescope.align.mip.search import _SINGULAR_RELATIVE
from prunescope.align.mip.supports import is_feasible_support, refit_on_support
from prunescope.settings import MipSettings

log = logging.getLogger("prunescope")

_SCIP_INFINITY = 1e20  # SCIP's largest time limit, standing for none


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


def solve_with_scip(w, Q, k, shape, warm, settings: MipSettings, lam_min: float):
    """SCIP on the perspective model (indicator constraints when Q is singular), warm-started
    and stopped by the ``settings``' time limit, total node limit and gap; returns (mask,
    bound, status, nodes) with the mask never worse than ``warm``."""
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
    model, m = _scip_model(
        form, k, shape, warm, settings.time_limit, settings.node_limit, settings.gap
    )
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
