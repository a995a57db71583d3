"""Study ALIGN's tables: per-trial rows gathered, then mean and standard error over trials."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prunescope.align.experiment import mip_frame
from prunescope.align.methods import BASIS_METHODS, split_method

VARIANT_KEYS = ["task", "structure", "method", "sparsity"]
MIP_KEYS = ["task", "structure", "sparsity"]
PROVEN = ("optimal", "enumerated")


def accuracy_table(pruned: list[pd.DataFrame], finetuned: list[pd.DataFrame]) -> pd.DataFrame:
    """Every variant of every trial, once after pruning and once after fine-tuning."""
    frames = [f.assign(stage="pruned") for f in pruned]
    frames += [f.assign(stage="finetuned") for f in finetuned]
    table = pd.concat(frames, ignore_index=True)
    first = ["task", "structure", "method", "sparsity", "stage", "trial"]
    rest = [c for c in table.columns if c not in first and c != "variant"]
    return table[first + rest].sort_values(first, ignore_index=True)


def standard_error(values: pd.Series) -> float:
    """One standard error of the mean over trials (0 for a single trial)."""
    values = values.dropna()
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def summarise(table: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean, standard error and trial count of each metric per group of ``keys``."""
    groups = table.groupby(keys, sort=True)
    parts = {"trials": groups.size()}
    for metric in metrics:
        parts[f"{metric}_mean"] = groups[metric].mean()
        parts[f"{metric}_se"] = groups[metric].agg(standard_error)
    return pd.DataFrame(parts).reset_index()


def accuracy_summary(table: pd.DataFrame) -> pd.DataFrame:
    metrics = ["test_accuracy", "train_loss", "w1_divergence", "c1_divergence"]
    metrics += [c for c in ("4P-positive",) if c in table.columns]
    return summarise(table, [*VARIANT_KEYS, "stage"], metrics)


BASIS_COMPARED = ("mp", "obs", "mip", "flo", *BASIS_METHODS)
"""The methods the estimated-basis table sets side by side, in its row order."""
STAGE_METRICS = {
    "pruned": {"test_accuracy": "accuracy_pruned", "c1_divergence": "c1_divergence"},
    "finetuned": {"test_accuracy": "accuracy_finetuned"},
}
CODES = "4P-positive"


def basis_comparison(accuracy: pd.DataFrame, recovery: pd.DataFrame) -> pd.DataFrame:
    """MP, OBS, MIP and FLO with C0 and with each estimated basis, per task, structure and
    sparsity: mean and standard error over trials of the test accuracy after pruning and
    after fine-tuning, the C1 divergence after pruning, the 4P-positive codes at both
    stages (tasks with clauses) and, for an estimated basis, its recovery of C0's columns.

    ``accuracy`` is the per-trial accuracy table; ``recovery`` one row per (task, trial,
    estimator) with the ``mean_best_cosine`` of :func:`basis.recovery`.
    """
    rows = accuracy[accuracy["method"].isin(BASIS_COMPARED)]
    keys = [*VARIANT_KEYS, "trial"]
    columns = []
    for stage, renamed in STAGE_METRICS.items():
        if CODES in rows:
            renamed = {**renamed, CODES: f"{CODES}_{stage}"}
        staged = rows[rows["stage"] == stage].set_index(keys)[list(renamed)]
        columns.append(staged.rename(columns=renamed))
    per_trial = pd.concat(columns, axis=1).reset_index()
    per_trial["basis"] = [method_basis(m) for m in per_trial["method"]]
    per_trial = per_trial.merge(
        recovery.rename(columns={"estimator": "basis", "mean_best_cosine": "basis_recovery"})[
            ["task", "trial", "basis", "basis_recovery"]
        ],
        on=["task", "trial", "basis"],
        how="left",
    )
    metrics = [c for c in per_trial if c not in {*keys, "basis"}]
    table = summarise(per_trial, [*VARIANT_KEYS, "basis"], metrics)
    order = {method: rank for rank, method in enumerate(BASIS_COMPARED)}
    table = table.sort_values(
        ["task", "structure", "sparsity", "method"],
        key=lambda column: column.map(order) if column.name == "method" else column,
        ignore_index=True,
    )
    first = ["task", "structure", "sparsity", "method", "basis"]
    return table[first + [c for c in table if c not in first]]


def method_basis(method: str) -> str:
    """The basis a method prunes against: ``C0`` (the oracle's), an estimator's name, or
    ``weights`` for MP and OBS, which rank the weights themselves."""
    base, estimator = split_method(method)
    if estimator is not None:
        return estimator
    return "C0" if base in ("mip", "flo") else "weights"


def recovery_summary(recovery: pd.DataFrame) -> pd.DataFrame:
    """Per task and estimator: the mean and the worst best-|cosine| of the estimated columns
    with C0's, as mean and standard error over trials."""
    return summarise(recovery, ["task", "estimator"], ["mean_best_cosine", "min_best_cosine"])


def mip_neuron_table(solutions: list[dict]) -> pd.DataFrame:
    """One row per neuron of every MIP solve, labelled with its task, structure and trial."""
    if not solutions:  # no method asked for the oracle
        columns = ["task", "structure", "sparsity", "status", "solver", "gap", "seconds", "nodes"]
        return pd.DataFrame(columns=columns)
    return pd.concat([mip_frame(s) for s in solutions], ignore_index=True)


def mip_summary(neurons: pd.DataFrame) -> pd.DataFrame:
    """How many neurons were proven optimal, the gaps of the rest and the nodes searched.

    Only columns that the same config reproduces on any machine (once the MIP's node limit,
    not its time limit, stops the search); the solve times are in :func:`mip_seconds`.
    """
    groups = neurons.groupby(MIP_KEYS, sort=True)
    return pd.DataFrame(
        {
            "neurons": groups.size(),
            "proven_optimal": groups["status"].agg(lambda s: int(s.isin(PROVEN).sum())),
            "enumerated": groups["solver"].agg(lambda s: int((s == "enumeration").sum())),
            "mean_gap": groups["gap"].mean(),
            "max_gap": groups["gap"].max(),
            "median_nodes": groups["nodes"].median(),
        }
    ).reset_index()


def mip_seconds(neurons: pd.DataFrame) -> pd.DataFrame:
    """Wall-clock seconds per neuron of every MIP solve: median, largest and total. They
    depend on the machine, so they are kept out of the tables."""
    groups = neurons.groupby(MIP_KEYS, sort=True)["seconds"]
    return pd.DataFrame(
        {
            "neurons": groups.size(),
            "median_seconds": groups.median(),
            "max_seconds": groups.max(),
            "total_seconds": groups.sum(),
        }
    ).reset_index()
