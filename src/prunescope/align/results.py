"""Study ALIGN's tables: per-trial rows gathered, then mean and standard error over trials."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prunescope.align.experiment import mip_frame

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
