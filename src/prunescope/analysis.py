"""The paper's tables from per-artifact records (RQ1-RQ5, Table 1, Table B.1).

Inputs are plain records read from the workflow's artifacts (match rates,
SAE metrics, perplexities); outputs are pandas DataFrames. Every table says
how many items (features, seeds, pairs, prompts) each number rests on, and a
number that cannot be computed is NaN with a ``note`` saying why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prunescope.io import read_json
from prunescope.matching import MatchResult, best_cosine, load_matches, survival_per_feature
from prunescope.plan import parse_condition
from prunescope.stats import (
    bootstrap_q1_minus_q5,
    feature_spearman,
    firing_rate_quintiles,
    fit_survival_logit,
    q1_q5_ratio,
    spearman_exact,
    survival_by_quintile,
    survival_target,
)

METRICS = ("one_way", "mnn", "greedy")


def condition_columns(cond: str) -> dict:
    method, sparsity = parse_condition(cond)
    return {"condition": cond, "method": method, "sparsity": sparsity}


def rate_records(result: MatchResult, **keys) -> list[dict]:
    """One row per tau of a match: the three rates and the counts they rest on."""
    return [{**keys, **row} for row in result.rates()]


def summarise_pairs(records: Iterable[dict], by: Sequence[str]) -> pd.DataFrame:
    """Mean and standard deviation of each metric over seed pairs (RQ1, RQ2 with all pairs)."""
    frame = pd.DataFrame(list(records))
    rows = []
    for key, group in frame.groupby(list(by), sort=False, dropna=False):
        row = dict(zip(by, key, strict=True))
        row["n_pairs"] = len(group)
        row["n_features"] = int(group["n_a"].iloc[0])
        for metric in METRICS:
            values = group[metric].to_numpy(dtype=float)
            row[f"{metric}_mean"] = values.mean()
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        row["note"] = "" if len(group) > 1 else "one pair: no standard deviation"
        rows.append(row)
    return pd.DataFrame(rows)


def add_seed_floor(survival: pd.DataFrame, stability: pd.DataFrame) -> pd.DataFrame:
    """Ratio of dense->pruned MNN to the dense seed-to-seed MNN at the same tau (RQ2)."""
    dense = stability[stability["condition"] == "dense"]
    floor = dense.set_index(["model", "layer", "tau"])["mnn_mean"].rename("seed_floor_mnn")
    out = survival.join(floor, on=["model", "layer", "tau"])
    ratio = out["mnn_mean"] / out["seed_floor_mnn"]
    bad = ~(out["seed_floor_mnn"] > 0)
    out["ratio_to_floor"] = ratio.where(~bad, np.nan)
    out.loc[bad, "note"] = "seed floor is zero or missing: ratio undefined"
    return out


def quintile_rows(
    firing_rate: np.ndarray,
    match: MatchResult,
    tau: float,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, dict]:
    """RQ4 for one condition at one tau: survival per quintile and its summary statistics.

    Survival of a dense feature = it has an MNN partner with cosine >= tau in the
    pruned SAE. Quintiles are over alive dense features (firing rate > 0).
    """
    survived = survival_per_feature(match, tau)
    return quintile_summary(
        firing_rate, survived, best_cosine(match), tau, n_boot=n_boot, seed=seed
    )


def activation_quintile_rows(
    table: pd.DataFrame, tau: float, *, n_boot: int, seed: int
) -> tuple[pd.DataFrame, dict]:
    """RQ4 under activation-level survival: a dense feature survives when the correlation of
    its activations on the dense and on the pruned model's tokens reaches ``tau``
    (``prunescope.survival.activation_survival``'s per-feature table)."""
    correlation = table["correlation"].to_numpy(dtype=float)
    # a feature silent (or constant) on the pruned activations has no correlation: it does
    # not survive, and in the rank correlation with firing rate it ranks below every other
    score = np.where(np.isnan(correlation), -1.0, correlation)
    return quintile_summary(
        table["dense_rate"].to_numpy(dtype=float),
        score >= tau,
        score,
        tau,
        n_boot=n_boot,
        seed=seed,
    )


def quintile_summary(
    firing_rate: np.ndarray,
    survived: np.ndarray,
    score: np.ndarray,
    tau: float,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, dict]:
    """Survival per firing-rate quintile and Table 3's statistics, whatever defines survival.

    ``survived`` says per dense feature whether it survives at ``tau``; ``score`` is the
    per-feature value thresholded (best cosine, activation correlation) for the
    feature-level rank correlation with firing rate.
    """
    quintile = firing_rate_quintiles(firing_rate)
    per_q = survival_by_quintile(quintile, survived, firing_rate)
    rho, p = spearman_exact(per_q["mean_firing_rate"], per_q["survival"])
    s = per_q.set_index("quintile")["survival"]
    ratio, ratio_note = q1_q5_ratio(s.get(1, np.nan), s.get(5, np.nan))
    diff = bootstrap_q1_minus_q5(quintile, survived, n_boot=n_boot, seed=seed)
    alive = quintile > 0
    f_rho, f_p = feature_spearman(firing_rate, score, alive_mask=alive)
    summary = {
        "tau": tau,
        **{f"Q{q}": s.get(q, np.nan) for q in range(1, 6)},
        "q1_q5_ratio": ratio,
        "spearman_rho": rho,
        "spearman_p_exact": p,
        "q1_minus_q5": diff["estimate"],
        "q1_minus_q5_low": diff["low"],
        "q1_minus_q5_high": diff["high"],
        "feature_spearman_rho": f_rho,
        "feature_spearman_p": f_p,
        "n_alive": int(alive.sum()),
        "n_per_quintile": "/".join(str(int(n)) for n in per_q["n_features"]),
        "n_boot": n_boot,
        "note": "; ".join(filter(None, [ratio_note, diff.get("note", "")])),
    }
    return per_q.assign(tau=tau), summary


DEFINITIONS = {
    "activation": "the dense reference SAE applied to the dense and to the pruned model's "
    "activations of the same tokens; a dense feature survives when the correlation of its "
    "two activation series reaches tau",
    "paired_init": "decoder MNN between the dense and the pruned SAE trained from the same seed, "
    "hence from the same initial dictionary; mean over seeds",
    "cross_seed": "decoder MNN between dense and pruned SAEs of different seeds (independent "
    "initialisations); mean over every such pair",
    "seed_floor": "decoder MNN between dense SAEs of different seeds: what two independently "
    "initialised SAEs of the same model share; mean over seed pairs",
}
"""What each value of a survival table's ``definition`` column means (README, captions)."""


def activation_survival_tables(
    per_feature: dict[tuple[str, int, str], pd.DataFrame],
    taus: Sequence[float],
    primary_tau: float,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From each (model, layer, condition)'s per-feature table: survival at every tau
    (with the counts behind it), the Table 3 layout at ``primary_tau``, and the long
    per-quintile table at every tau. Each row names its survival definition."""
    from prunescope.survival import survival_fractions

    fractions, summaries, quintiles = [], [], []
    for (model, layer, cond), table in per_feature.items():
        keys = {"model": model, "layer": layer, **condition_columns(cond)}
        keys["definition"] = "activation"
        fractions.append(survival_fractions(table, taus).assign(**keys))
        for tau in taus:
            per_q, summary = activation_quintile_rows(table, tau, n_boot=n_boot, seed=seed)
            summaries.append({**keys, **summary})
            quintiles.append(per_q.assign(**keys))
    summary = pd.DataFrame(summaries)
    table3 = summary[summary["tau"] == primary_tau].reset_index(drop=True)
    return (
        _keys_first(pd.concat(fractions, ignore_index=True)),
        table3,
        _keys_first(pd.concat(quintiles, ignore_index=True)),
    )


def _keys_first(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "layer", "condition", "method", "sparsity", "definition"]
    return frame[keys + [c for c in frame.columns if c not in keys]]


def logistic_frame(
    firing_rate: np.ndarray, matches_by_sparsity: dict[float, list[MatchResult]], tau: float
) -> pd.DataFrame:
    """One row per alive dense feature and sparsity: survived = survives in > half the seeds."""
    alive = firing_rate > 0
    frames = []
    for sparsity, matches in sorted(matches_by_sparsity.items()):
        rate = np.mean([survival_per_feature(m, tau) for m in matches], axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "firing_rate": firing_rate[alive],
                    "sparsity": sparsity,
                    "survived": survival_target(rate[alive]),
                    "n_seeds": len(matches),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def logistic_rows(fit: dict, **keys) -> list[dict]:
    """Flatten a fit into one row per term (coefficient, SE, z, p) plus the fit's quality."""
    shared = {
        **keys,
        "tau": fit["tau"],
        "n": fit["n"],
        "n_survived": fit["n_survived"],
        "auc": fit["auc"],
        "accuracy": fit["accuracy"],
        "converged": fit["converged"],
        "note": fit["note"],
    }
    return [{**shared, "term": term, **values} for term, values in fit["coefficients"].items()]


def fit_logit_for(firing_rate, matches_by_sparsity, tau: float) -> dict:
    return fit_survival_logit(logistic_frame(firing_rate, matches_by_sparsity, tau), tau)


def perplexity_table(records: Iterable[dict]) -> pd.DataFrame:
    """Table 1: perplexity per model, method and sparsity; dense is every method's 0 %."""
    rows = []
    for r in records:
        rows.append(
            {
                "model": r["model"],
                **condition_columns(r["condition"]),
                "perplexity": r["perplexity"],
                "n_tokens": r["n_tokens_scored"],
            }
        )
    return pd.DataFrame(rows).sort_values(["model", "method", "sparsity"], ignore_index=True)


def sae_quality_table(records: Iterable[dict]) -> pd.DataFrame:
    """Table B.1: SAE FVU, L0 and alive features averaged over seeds, with n."""
    frame = pd.DataFrame(list(records))
    keys = ["model", "layer", "condition", "method", "sparsity"]
    out = (
        frame.groupby(keys, sort=False)
        .agg(
            fvu=("fvu", "mean"),
            fvu_std=("fvu", "std"),
            l0=("l0", "mean"),
            alive=("alive", "mean"),
            d_sae=("d_sae", "first"),
            n=("seed", "count"),
        )
        .reset_index()
    )
    return out.sort_values(["model", "layer", "method", "sparsity"], ignore_index=True)


def match_rate_records(paths: Iterable[str], side: str) -> list[dict]:
    """Rate rows of saved matches, keyed by the condition on ``side`` (``a`` or ``b``)."""
    records = []
    for path in paths:
        match = load_matches(path)
        a = match.attrs
        keys = {"model": a["model"], "layer": a["layer"], **condition_columns(a[f"cond_{side}"])}
        records += rate_records(match, **keys, seed_a=a["seed_a"], seed_b=a["seed_b"])
    return records


def reference_firing_rates(metrics_paths: Iterable[str]) -> dict[tuple[str, int], np.ndarray]:
    """Per-feature eval firing rates of the dense reference SAEs, by (model, layer)."""
    firing = {}
    for path in metrics_paths:
        provenance = read_json(Path(path).with_name("cfg.json"))["provenance"]
        key = (provenance["model"], int(provenance["layer"]))
        firing[key] = np.asarray(read_json(path)["firing_rate"], dtype=float)
    return firing
