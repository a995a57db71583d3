"""The feature-aware pruning tables: every condition's distortions beside its perplexity
and feature survival, and how well each distortion ranks the conditions by those outcomes.

Distortions are averaged over the matrices a feature basis serves (each matrix counts
once), so weight-space, input-space and feature-space numbers describe the same
matrices; the weight distortion over every prunable matrix is kept beside them. Input
distortion, ``||(W - W')X||^2 / ||WX||^2`` on the dense model's inputs, is the control:
what SparseGPT minimises, it asks whether the SAE's features add anything to the inputs'
own covariance.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from prunescope.stats import MAX_EXACT_N, spearman_exact

DISTORTIONS = (
    "weight_distortion",
    "input_distortion",
    "feature_distortion_uniform",
    "feature_distortion_energy",
)
OUTCOMES = {
    "perplexity_increase": "perplexity / dense perplexity - 1",
    "activation_loss": "1 - activation-level survival (dense SAE on both models)",
    "decoder_loss": "1 - cross-seed decoder survival (MNN) over the dense seed floor",
}


def condition_distortions(frame: pd.DataFrame) -> dict:
    """One condition's mean distortions over the matrices with a basis (and weight
    distortion over all matrices) from its per-matrix table."""
    served = frame.dropna(subset=["feature_distortion_energy"])
    if "input_distortion" not in frame:
        frame = frame.assign(input_distortion=float("nan"))
        served = served.assign(input_distortion=float("nan"))
    return {
        **{name: float(served[name].mean()) for name in DISTORTIONS},
        "weight_distortion_all": float(frame["weight_distortion"].mean()),
        "n_matrices_with_basis": len(served),
        "n_matrices": len(frame),
    }


def _pick(table: pd.DataFrame, **equal) -> pd.DataFrame:
    mask = np.ones(len(table), dtype=bool)
    for column, value in equal.items():
        column_values = table[column]
        if isinstance(value, float):
            mask &= np.isclose(column_values.astype(float), value)
        else:
            mask &= column_values.astype(str) == str(value)
    return table[mask]


def _one(table: pd.DataFrame, column: str, **equal) -> float:
    rows = _pick(table, **equal)
    return float(rows[column].iloc[0]) if len(rows) else math.nan


def feature_pruning_table(
    distortions: dict[tuple[str, str], pd.DataFrame],
    perplexity: pd.DataFrame,
    activation_survival: pd.DataFrame,
    decoder_survival: pd.DataFrame,
    activation_quintiles: pd.DataFrame,
    *,
    sae_label: str,
    activation_tau: float,
    decoder_tau: float,
) -> pd.DataFrame:
    """One row per (model, layer, pruned condition): method, sparsity, perplexity and its
    increase, activation-level survival of the dense SAE's features (``sae_label``) at
    ``activation_tau`` with its matched-noise control and its quintiles, decoder survival
    at ``decoder_tau`` (paired-init and cross-seed MNN, the latter over the dense seed
    floor), and the mean distortions of :func:`condition_distortions`."""
    rows = []
    layers = activation_survival[["model", "layer"]].drop_duplicates().itertuples(index=False)
    for model, layer in layers:
        dense_ppl = _one(perplexity, "perplexity", model=model, condition="dense")
        for (frame_model, cond), frame in distortions.items():
            if frame_model != model:
                continue
            key = {"model": model, "layer": layer, "condition": cond}
            survival = _pick(activation_survival, sae=sae_label, tau=activation_tau, **key)
            quintiles = _pick(activation_quintiles, sae=sae_label, definition="activation", **key)
            ppl = _one(perplexity, "perplexity", model=model, condition=cond)
            decoder = {"tau": decoder_tau, **key}
            row = {
                **key,
                "method": _one_text(survival, "method"),
                "sparsity": _one(survival, "sparsity"),
                "perplexity": ppl,
                "perplexity_increase": ppl / dense_ppl - 1,
                "activation_survival": _one(survival, "survival", definition="activation"),
                "noise_control_survival": _one(survival, "survival", definition="matched_noise"),
                **{q: _one(quintiles, q) for q in ("Q1", "Q2", "Q3", "Q4", "Q5")},
                "decoder_paired_init": _one(
                    decoder_survival, "mnn_mean", definition="paired_init", **decoder
                ),
                "decoder_cross_seed": _one(
                    decoder_survival, "mnn_mean", definition="cross_seed", **decoder
                ),
                "decoder_cross_seed_to_floor": _one(
                    decoder_survival, "ratio_to_floor", definition="cross_seed", **decoder
                ),
                **condition_distortions(frame),
            }
            rows.append(row)
    return pd.DataFrame(rows)


def _one_text(table: pd.DataFrame, column: str) -> str:
    return str(table[column].iloc[0]) if len(table) else ""


def outcome_values(table: pd.DataFrame) -> dict[str, pd.Series]:
    """Each outcome as a loss (larger = worse), so a good distortion correlates positively."""
    return {
        "perplexity_increase": table["perplexity_increase"],
        "activation_loss": 1 - table["activation_survival"],
        "decoder_loss": 1 - table["decoder_cross_seed_to_floor"],
    }


def rank_correlation(x, y) -> tuple[float, float, str]:
    """Spearman rho and p: exact by permutation up to ``MAX_EXACT_N`` points, scipy's
    t approximation above; NaN pairs are dropped first."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    if len(xs) < 3:
        return math.nan, math.nan, "fewer than 3 conditions"
    if len(xs) <= MAX_EXACT_N:
        rho, p = spearman_exact(xs, ys)
        return rho, p, "exact permutation p"
    result = scipy_stats.spearmanr(xs, ys)
    return float(result.statistic), float(result.pvalue), "t approximation p"


def distortion_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer), distortion measure and outcome: how well the measure ranks the
    pruned conditions by the outcome (Spearman over conditions)."""
    rows = []
    for (model, layer), group in table.groupby(["model", "layer"], sort=False):
        outcomes = outcome_values(group)
        for measure in DISTORTIONS:
            for outcome, values in outcomes.items():
                rho, p, note = rank_correlation(group[measure], values)
                rows.append(
                    {
                        "model": model,
                        "layer": layer,
                        "distortion": measure,
                        "outcome": outcome,
                        "spearman_rho": rho,
                        "p_value": p,
                        "n_conditions": int((~values.isna() & ~group[measure].isna()).sum()),
                        "outcome_definition": OUTCOMES[outcome],
                        "note": note,
                    }
                )
    return pd.DataFrame(rows)
