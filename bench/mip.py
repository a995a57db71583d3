"""MIP oracle: our per-neuron solver against the paper's CVXPY + SCIP formulation.

A DNF net of the paper preset's largest width (m = 64 literals, the preset's dataset sizes,
Adam learning rate and batch size, fewer epochs) is trained with the repo's own functions.
Every neuron of its W1 is then pruned to 50 % unstructured sparsity twice, under the same
per-neuron time limit and relative gap: by ``solve_neuron`` (what ``solve_layer`` runs per
row, with Q and λ_min(Q) shared across rows as there), and by the big-M MIQP one writes in
CVXPY and hands to ``solver=cp.SCIP`` (the paper's stack, appendix A.3). The two alternate
neuron by neuron, so that a slow spell of the machine hits both alike; each wall time includes
everything the solver does for that neuron (our warm start, CVXPY's compilation).

The CVXPY model is min ‖C0ᵀ(w − v)‖² s.t. |v_j| ≤ M_j m_j, Σ m_j ≤ keep, m binary. Its big-M
comes from the ellipsoid of rows no worse than magnitude pruning, M_j = |w_j| +
sqrt(f_magnitude [Q⁻¹]_jj), so that no optimum is cut off. SCIP proves a neuron when it stops
with status "optimal" or "gaplimit"; ours when it reports "optimal" or "enumerated".

Size ``tiny`` trains a 16-literal net on 5,000 samples and solves three neurons, 0.3 s each,
which our solver enumerates: it only checks that both paths run.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.harness import target
from prunescope.align.data import dataset_from_options
from prunescope.align.mip import MipSettings, refit_on_support, solve_neuron
from prunescope.align.net import AlignNets, evaluate_nets, train_nets
from prunescope.align.plan import dataset_options
from prunescope.align.prune import select_mask
from prunescope.align.structures import keep_count

PRESET = Path(__file__).resolve().parents[1] / "configs/paper.yaml"
SPARSITY = 0.5
SETTINGS = {
    # time limit per neuron: 64 neurons on each side stay within about 10 minutes in all
    "full": {"task": "dnf64", "epochs": 10, "neurons": 64, "time_limit": 3.0},
    "tiny": {"task": "dnf16", "epochs": 2, "neurons": 3, "time_limit": 0.3, "samples": 5000},
}
NARROWER = {"task": "dnf32", "epochs": 10, "neurons": 32, "time_limit": 3.0}
SPEED_UP_BOUND = 5.0
AGREEMENT_BOUND = 1e-3  # relative; both solvers stop within `gap` = 1e-4 of their bound
OURS_PROVEN = ("optimal", "enumerated")
SCIP_PROVEN = ("optimal", "gaplimit")


def train_net(
    preset: dict, task: str, epochs: int, samples: int | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """The preset's dataset and training settings for ``task`` (trial 0), ``epochs`` epochs;
    ``samples`` caps the training split (the test split gets a fifth of it), for a quick run."""
    options = dataset_options(preset, task, trial=0)
    if samples is not None:
        options = {**options, "n_train": samples, "n_test": samples // 5}
    data = dataset_from_options(options)
    training = preset["align"]["training"]
    nets = AlignNets.initialise(1, options["literals"], data.classes, seed=0)
    started = time.perf_counter()
    train_nets(
        nets,
        data.x_train,
        data.y_train,
        epochs=epochs,
        lr=training["lr"],
        batch_size=training["batch_size"],
        seed=0,
        progress=False,
    )
    train_s = time.perf_counter() - started
    _, accuracy = evaluate_nets(nets, data.x_test, data.y_test)
    net = nets.variant(0)
    Q = net["C0"] @ net["C0"].T
    facts = {
        "task": task,
        "literals": options["literals"],
        "n_train": options["n_train"],
        "epochs": epochs,
        "preset_epochs": training["epochs"],
        "train_s": train_s,
        "test_accuracy": float(accuracy[0]),
        "lam_min_over_mean_diagonal": float(np.linalg.eigvalsh(Q)[0] / np.mean(np.diag(Q))),
    }
    return net, facts


def solve_ours(w, Q, keep, lam_min, setting, mip) -> dict:
    started = time.perf_counter()
    settings = MipSettings(
        time_limit=setting["time_limit"], gap=mip["gap"], enumerate_limit=mip["enumerate_limit"]
    )
    solution = solve_neuron(w, Q, keep, None, settings=settings, lam_min=lam_min)
    return {
        "wall_s": time.perf_counter() - started,
        "status": solution.status,
        "solver": solution.solver,
        "proven": solution.status in OURS_PROVEN,
        "objective": solution.objective,
        "bound": solution.bound,
        "gap": solution.gap,
        "nodes": solution.nodes,
    }


def big_m(w: np.ndarray, Q: np.ndarray, Q_inverse: np.ndarray, keep: int) -> np.ndarray:
    """|v_j| of every row at least as good as magnitude pruning's refit lies below M_j."""
    magnitude = refit_on_support(w, Q, select_mask(np.abs(w)[None, :], keep)[0])[1]
    return np.abs(w) + np.sqrt(magnitude * np.diag(Q_inverse))


def solve_cvxpy_scip(w, C0, Q, Q_inverse, keep, setting, mip) -> dict:
    """The straightforward big-M MIQP in CVXPY, solved by SCIP with SCIP's defaults."""
    import cvxpy as cp

    started = time.perf_counter()
    d = w.size
    M = big_m(w, Q, Q_inverse, keep)
    v = cp.Variable(d)
    m = cp.Variable(d, boolean=True)
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(C0.T @ (w - v))),
        [cp.abs(v) <= cp.multiply(M, m), cp.sum(m) <= keep],
    )
    with warnings.catch_warnings():
        # CVXPY warns that a solution stopped by the time limit "may be inaccurate"
        warnings.simplefilter("ignore", UserWarning)
        try:
            problem.solve(
                solver=cp.SCIP,
                scip_params={"limits/time": setting["time_limit"], "limits/gap": mip["gap"]},
            )
        except cp.error.SolverError:
            pass  # SCIP stopped before finding any solution
    wall_s = time.perf_counter() - started
    stats = problem.solver_stats
    model = None if stats is None else stats.extra_stats["model"]
    if v.value is None or model is None:
        return {
            "wall_s": wall_s,
            "status": "no solution",
            "proven": False,
            "objective": None,
            "objective_refit": None,
            "bound": 0.0,
            "gap": 1.0,
            "scip_s": None,
            "nodes": None,
        }
    status = str(model.getStatus())
    residual = w - v.value
    objective = float(residual @ Q @ residual)
    support = m.value > 0.5
    # CVXPY hands SCIP min t over ‖C0ᵀ(w − v)‖² ≤ t with no constant offset (its primal
    # bound equals the objective at v, recorded below), so the dual bound is one on f itself
    bound = min(max(float(model.getDualbound()), 0.0), objective)
    return {
        "wall_s": wall_s,
        "status": status,
        "proven": status in SCIP_PROVEN,
        "objective": objective,
        "objective_refit": refit_on_support(w, Q, support)[1],
        "bound": bound,
        "gap": (objective - bound) / objective if objective > 0 else 0.0,
        "primal_bound": float(model.getPrimalbound()),
        "scip_s": model.getSolvingTime(),
        "nodes": int(model.getNTotalNodes()),
    }


def mean_or_none(values: list) -> float | None:
    """Mean over the neurons that have a solution (None when none has)."""
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def summary(name: str, rows: list[dict], setting: dict, d: int, keep: int) -> dict:
    objectives = [row["objective"] for row in rows if row["objective"] is not None]
    statuses = {row["status"] for row in rows}
    return {
        "solver": name,
        "d": d,
        "keep": keep,
        "neurons": len(rows),
        "time_limit_s": setting["time_limit"],
        "total_s": float(sum(row["wall_s"] for row in rows)),
        "median_s": float(np.median([row["wall_s"] for row in rows])),
        "proven_optimal": int(sum(row["proven"] for row in rows)),
        "mean_gap": float(np.mean([row["gap"] for row in rows])),
        "mean_objective": mean_or_none(objectives),
        "without_solution": len(rows) - len(objectives),
        "mean_objective_refit_on_its_support": mean_or_none(
            [row.get("objective_refit", row["objective"]) for row in rows]
        ),
        "statuses": {s: sum(row["status"] == s for row in rows) for s in sorted(statuses)},
    }


def agreement(ours: list[dict], reference: list[dict]) -> dict:
    """Largest relative difference of the two objectives over neurons both prove optimal."""
    both = [
        (a["objective"], b["objective_refit"])
        for a, b in zip(ours, reference, strict=True)
        if a["proven"] and b["proven"]
    ]
    differences = [abs(a - b) / max(a, b, np.finfo(float).tiny) for a, b in both]
    return {"both_proven": len(both), "max_relative_difference": max(differences, default=0.0)}


def compare(preset: dict, setting: dict) -> tuple[dict, dict, dict, dict]:
    """Train the setting's net and solve its neurons with both solvers, alternating; returns
    (our case, the reference's case, agreement on jointly proven neurons, net facts)."""
    mip = preset["align"]["mip"]
    net, facts = train_net(preset, setting["task"], setting["epochs"], setting.get("samples"))
    C0, W1 = net["C0"], net["W1"]
    Q = C0 @ C0.T
    Q_inverse = np.linalg.inv(Q)
    lam_min = float(np.linalg.eigvalsh(Q)[0])
    d = W1.shape[1]
    keep = keep_count(d, SPARSITY)
    # untimed: the first call of each pays for imports and compilation
    short = {**setting, "time_limit": 0.05}
    solve_ours(W1[0], Q, keep, lam_min, short, mip)
    solve_cvxpy_scip(W1[0], C0, Q, Q_inverse, keep, short, mip)

    ours, reference = [], []
    for i in range(min(setting["neurons"], W1.shape[0])):
        ours.append(solve_ours(W1[i], Q, keep, lam_min, setting, mip))
        reference.append(solve_cvxpy_scip(W1[i], C0, Q, Q_inverse, keep, setting, mip))
    ours_case = summary("ours (solve_neuron)", ours, setting, d, keep)
    reference_case = summary("CVXPY + SCIP big-M", reference, setting, d, keep)
    ours_case["speed_up_vs_reference"] = reference_case["total_s"] / ours_case["total_s"]
    facts["neurons"] = {"ours": ours, "cvxpy_scip": reference}
    return ours_case, reference_case, agreement(ours, reference), facts


def run(size: str) -> dict:
    preset = yaml.safe_load(PRESET.read_text())
    ours_case, reference_case, agree, facts = compare(preset, SETTINGS[size])
    cases = [ours_case, reference_case]
    if size == "full":
        # Not a target: the width where our search finishes, to show what a proof costs each.
        narrower = compare(preset, NARROWER)
        cases += [{**case, "width": "dnf32"} for case in narrower[:2]]
    speed_up = ours_case["speed_up_vs_reference"]
    return {
        "cases": cases,
        "targets": [
            target(
                "neurons proven optimal: ours minus CVXPY + SCIP",
                ours_case["proven_optimal"] - reference_case["proven_optimal"],
                0,
                ">=",
            ),
            target("total wall time, CVXPY + SCIP over ours", speed_up, SPEED_UP_BOUND, ">=", "x"),
            target(
                f"objective gap where both prove optimality ({agree['both_proven']} neurons)",
                agree["max_relative_difference"],
                AGREEMENT_BOUND,
                "<=",
            ),
        ],
        "net": facts,
        "sparsity": SPARSITY,
        "gap": preset["align"]["mip"]["gap"],
        "agreement": agree,
        "gpu": "not measured: both solvers run on the CPU only"
        + ("" if not torch.cuda.is_available() else " (a GPU was present)"),
    }
