"""The paper's tables from per-artifact records (RQ1-RQ5, Table 1, Table B.1).

Inputs are plain records read from the workflow's artifacts (match rates,
SAE metrics, perplexities); outputs are pandas DataFrames. Every table says
how many items (features, seeds, pairs, prompts) each number rests on, and a
number that cannot be computed is NaN with a ``note`` saying why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prunescope.io import read_json, write_csv
from prunescope.matching import (
    MatchResult,
    best_cosine,
    load_matches,
    survival_per_feature,
    swap_sides,
)
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


# --- decoder survival by definition: paired_init, cross_seed and the seed floor ------------------

DECODER_DEFINITIONS = ("paired_init", "cross_seed", "seed_floor")
KEYS = ("model", "layer", "condition", "method", "sparsity", "definition")


def pair_definition(attrs: dict) -> str:
    """Which decoder-survival definition a match between two SAEs measures, from its attrs."""
    cond_a, cond_b = attrs["cond_a"], attrs["cond_b"]
    same_seed = int(attrs["seed_a"]) == int(attrs["seed_b"])
    if cond_a != "dense":
        raise ValueError(f"a decoder-survival match has the dense SAE on side A, not {cond_a!r}")
    if cond_b == "dense":
        if same_seed:
            raise ValueError("a dense SAE matched with itself measures nothing")
        return "seed_floor"
    return "paired_init" if same_seed else "cross_seed"


def _ordered(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by ``by`` with definitions in DEFINITIONS' order, keys first."""
    rank = {d: i for i, d in enumerate(DEFINITIONS)}
    frame = frame.assign(_rank=frame["definition"].map(rank))
    by = [c if c != "definition" else "_rank" for c in by]
    frame = frame.sort_values(by, kind="stable", ignore_index=True).drop(columns="_rank")
    return _keys_first(frame)


def survival_records(matches: Iterable[MatchResult]) -> list[dict]:
    """Rate rows of dense x pruned matches, keyed by the pruned condition and the definition."""
    records = []
    for match in matches:
        a = match.attrs
        keys = {"model": a["model"], "layer": a["layer"], **condition_columns(a["cond_b"])}
        keys["definition"] = pair_definition(a)
        records += rate_records(match, **keys, seed_a=a["seed_a"], seed_b=a["seed_b"])
    return records


def survival_table(records: Iterable[dict], stability: pd.DataFrame) -> pd.DataFrame:
    """RQ2: match rates per definition (mean, std over pairs) beside the dense seed floor.

    One row per (model, layer, condition, tau, definition): ``paired_init`` averages the
    same-seed pairs, ``cross_seed`` every pair of different seeds. ``seed_floor_mnn`` is the
    dense seed-to-seed MNN of RQ1 at the same tau, ``ratio_to_floor`` each row's MNN over it.
    RQ1 matches each seed pair once (a < b); MNN pairs are symmetric, so with dictionaries of
    one size the rate is the same read from either side and the floor is the mean over
    every ordered pair a != b, like ``cross_seed`` (the quintile tables read both sides).
    """
    table = summarise_pairs(records, [*KEYS, "tau"])
    table = add_seed_floor(table, stability)
    note = table.pop("note")
    table["note"] = note
    return _ordered(table, ["model", "layer", "method", "sparsity", "definition", "tau"])


def pair_quintile_rows(
    matches: Iterable[MatchResult],
    firing: dict[tuple[str, int, int], np.ndarray],
    taus: Sequence[float],
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RQ4 for each decoder pair and tau: Table 3's statistics and the per-quintile rows.

    Quintiles are of the side-A dense SAE's features by its own firing rate
    (``firing[(model, layer, seed)]``). A dense x dense match (the seed floor) is read from
    both sides: MNN is symmetric and both sides' best partners are stored, so the floor
    covers every ordered pair (a, b), a != b, exactly as ``cross_seed`` does.
    """
    summaries, quintiles = [], []
    for match in matches:
        sides = [match]
        if pair_definition(match.attrs) == "seed_floor":
            sides.append(swap_sides(match))
        for side in sides:
            a = side.attrs
            keys = {"model": a["model"], "layer": a["layer"], **condition_columns(a["cond_b"])}
            keys |= {"definition": pair_definition(a), "seed_a": a["seed_a"], "seed_b": a["seed_b"]}
            rate = firing[(a["model"], int(a["layer"]), int(a["seed_a"]))]
            for tau in taus:
                per_q, summary = quintile_rows(rate, side, tau, n_boot=n_boot, seed=seed)
                summaries.append({**keys, **summary})
                quintiles.append(per_q.assign(**keys))
    return pd.DataFrame(summaries), pd.concat(quintiles, ignore_index=True)


TABLE3_STATISTICS = (
    "q1_q5_ratio",
    "spearman_rho",
    "spearman_p_exact",
    "q1_minus_q5",
    "q1_minus_q5_low",
    "q1_minus_q5_high",
    "feature_spearman_rho",
    "feature_spearman_p",
)
QUINTILES = tuple(f"Q{q}" for q in range(1, 6))


def mean_over_pairs(values: Sequence[float], name: str) -> tuple[float, float, str]:
    """Mean and standard deviation (ddof 1) of one number over pairs, where it is defined.

    A pair where it is undefined (NaN) is left out and a note says so: the mean is then
    over the other pairs only.
    """
    array = np.asarray(values, dtype=float)
    defined = array[~np.isnan(array)]
    n, k = len(array), len(defined)
    mean = defined.mean() if k else np.nan
    std = defined.std(ddof=1) if k > 1 else np.nan
    if k == n:
        return mean, std, ""
    if k == 0:
        return mean, std, f"{name} undefined in every pair"
    return mean, std, f"{name} undefined in {n - k} of {n} pairs; mean over the other {k}"


def _mean_counts(texts: Iterable[str]) -> str:
    """'20/20/20/20/20' strings of several pairs -> their per-quintile mean, same format."""
    counts = np.array([[float(n) for n in t.split("/")] for t in texts])
    return "/".join(f"{round(n, 1):g}" for n in counts.mean(axis=0))


def summarise_quintile_pairs(summaries: pd.DataFrame) -> pd.DataFrame:
    """Table 3 per definition: the mean over pairs of each quintile's survival (with its
    std over pairs) and of every statistic of ``quintile_summary``, with ``n_pairs``."""
    rows = []
    for key, group in summaries.groupby([*KEYS, "tau"], sort=False):
        row = dict(zip([*KEYS, "tau"], key, strict=True))
        row["n_pairs"] = len(group)
        notes = []
        for column in (*QUINTILES, *TABLE3_STATISTICS):
            row[column], std, note = mean_over_pairs(group[column], column)
            if column in QUINTILES:
                row[f"{column}_std"] = std
            notes.append(note)
        if len(group) > 1:
            # the ratio of the mean survivals, not the mean of per-pair ratios: a pair with
            # S(Q5) = 0 has no ratio, and leaving it out would bias the mean upwards
            row["q1_q5_ratio"], notes[len(QUINTILES)] = q1_q5_ratio(row["Q1"], row["Q5"])
        row["n_alive"] = group["n_alive"].mean()
        row["n_per_quintile"] = _mean_counts(group["n_per_quintile"])
        row["n_boot"] = int(group["n_boot"].iloc[0])
        row["note"] = group["note"].iloc[0] if len(group) == 1 else "; ".join(filter(None, notes))
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_quintile_long(quintiles: pd.DataFrame) -> pd.DataFrame:
    """The long per-quintile table per definition: means over pairs, with ``n_pairs``."""
    rows = []
    by = [*KEYS, "tau", "quintile"]
    for key, group in quintiles.groupby(by, sort=False):
        row = dict(zip(by, key, strict=True))
        row["survival"], row["survival_std"], note = mean_over_pairs(group["survival"], "survival")
        row["n_pairs"] = len(group)
        row["n_features"] = group["n_features"].mean()
        row["mean_firing_rate"] = group["mean_firing_rate"].mean()
        row["note"] = group["note"].iloc[0] if len(group) == 1 else note
        rows.append(row)
    return pd.DataFrame(rows)


def floor_ratio(values: pd.Series, floor: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``values / floor``, NaN where the floor is zero or missing, and which those are."""
    undefined = ~(floor > 0)
    return (values / floor).where(~undefined, np.nan), undefined


def _with_note(notes: pd.Series, where: pd.Series, text: str) -> pd.Series:
    extra = np.where(where, text, "")
    pairs = zip(notes.fillna(""), extra, strict=True)
    return pd.Series(["; ".join(filter(None, pair)) for pair in pairs], index=notes.index)


def add_quintile_floor(table3: pd.DataFrame, long: pd.DataFrame):
    """Per-quintile survival over the seed floor's at the same (model, layer, tau).

    Table 3 gets ``Q1_to_floor`` .. ``Q5_to_floor``; the long table ``floor`` and
    ``ratio_to_floor``. Both are NaN on the floor's own rows and where the floor is zero.
    """
    place = ["model", "layer", "tau"]
    is_floor = table3["definition"] == "seed_floor"
    floor = table3[is_floor].set_index(place)[list(QUINTILES)].add_suffix("_floor")
    table3 = table3.join(floor, on=place)
    zero = pd.Series(False, index=table3.index)
    for q in QUINTILES:
        ratio, undefined = floor_ratio(table3[q], table3.pop(f"{q}_floor"))
        table3[f"{q}_to_floor"] = ratio.where(~is_floor, np.nan)
        zero |= undefined & ~is_floor
    zero_note = "a seed-floor quintile is zero: ratio undefined"
    table3["note"] = _with_note(table3["note"], zero, zero_note)

    long_floor = long["definition"] == "seed_floor"
    by = [*place, "quintile"]
    floor = long[long_floor].set_index(by)["survival"].rename("floor")
    long = long.join(floor, on=by)
    long.loc[long_floor, "floor"] = np.nan
    long["ratio_to_floor"], undefined = floor_ratio(long["survival"], long["floor"])
    long["note"] = _with_note(
        long["note"], undefined & ~long_floor, "seed floor is zero or missing: ratio undefined"
    )
    return table3, long


def decoder_quintile_tables(
    matches: Iterable[MatchResult],
    firing: dict[tuple[str, int, int], np.ndarray],
    taus: Sequence[float],
    primary_tau: float,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RQ4 under decoder matching: Table 3 at ``primary_tau`` and the long per-quintile table
    at every tau, one row per definition (paired_init, cross_seed, seed_floor)."""
    summaries, quintiles = pair_quintile_rows(matches, firing, taus, n_boot=n_boot, seed=seed)
    table3, long = add_quintile_floor(
        summarise_quintile_pairs(summaries), summarise_quintile_long(quintiles)
    )
    columns = [
        *KEYS,
        "tau",
        "n_pairs",
        *QUINTILES,
        *(f"{q}_std" for q in QUINTILES),
        *(f"{q}_to_floor" for q in QUINTILES),
        *TABLE3_STATISTICS,
        "n_alive",
        "n_per_quintile",
        "n_boot",
        "note",
    ]
    table3 = table3[table3["tau"] == primary_tau][columns]
    order = ["model", "layer", "method", "sparsity", "definition", "tau"]
    long_columns = [*KEYS, "tau", "quintile", "survival", "survival_std", "floor"]
    long_columns += ["ratio_to_floor", "n_pairs", "n_features", "mean_firing_rate", "note"]
    return _ordered(table3, order), _ordered(long[long_columns], [*order, "quintile"])


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
    "matched_noise": "control for activation: the same SAE on the dense activations and on "
    "the dense activations moved, token by token, as far as pruning moved them but in a random "
    "direction; the survival any perturbation that large would leave",
    "paired_init": "decoder MNN between the dense and the pruned SAE trained from the same seed, "
    "hence from the same initial dictionary; mean over seeds",
    "cross_seed": "decoder MNN between dense and pruned SAEs of different seeds (independent "
    "initialisations); mean over every such pair",
    "seed_floor": "decoder MNN between dense SAEs of different seeds: what two independently "
    "initialised SAEs of the same model share; mean over seed pairs",
}
"""What each value of a survival table's ``definition`` column means (README, captions)."""


def write_survival_table(path, frame: pd.DataFrame) -> None:
    """Write a survival table, refusing one whose rows do not name a known definition.

    Every table of survival goes through here, so that no number can leave the workflow
    without saying which of ``DEFINITIONS`` it measures.
    """
    if "definition" not in frame.columns:
        raise ValueError(
            f"survival table {path} has no 'definition' column: every survival number must "
            f"say which definition it measures (one of {sorted(DEFINITIONS)})"
        )
    unknown = sorted({str(d) for d in frame["definition"] if d not in DEFINITIONS})
    if unknown:
        raise ValueError(
            f"survival table {path} has definition(s) {unknown}, which are not among "
            f"{sorted(DEFINITIONS)}"
        )
    write_csv(path, frame)


def activation_survival_tables(
    per_feature: dict[tuple[str, int, str, str], pd.DataFrame],
    taus: Sequence[float],
    primary_tau: float,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From each (model, layer, condition, SAE)'s per-feature table: survival at every tau
    (with the counts behind it), the Table 3 layout at ``primary_tau``, and the long
    per-quintile table at every tau. Each row names its survival definition and, in column
    ``sae``, the dictionary whose features it follows (the dense SAE trained here, or one
    trained elsewhere)."""
    from prunescope.survival import survival_fractions

    fractions, summaries, quintiles = [], [], []
    for (model, layer, cond, sae), table in per_feature.items():
        for definition, view in activation_views(table).items():
            keys = {"model": model, "layer": layer, "sae": sae, **condition_columns(cond)}
            keys["definition"] = definition
            fractions.append(survival_fractions(view, taus).assign(**keys))
            for tau in taus:
                per_q, summary = activation_quintile_rows(view, tau, n_boot=n_boot, seed=seed)
                summaries.append({**keys, **summary})
                quintiles.append(per_q.assign(**keys))
    summary = pd.DataFrame(summaries)
    table3 = summary[summary["tau"] == primary_tau].reset_index(drop=True)
    return (
        _keys_first(pd.concat(fractions, ignore_index=True)),
        table3,
        _keys_first(pd.concat(quintiles, ignore_index=True)),
    )


def activation_views(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The per-feature table once per definition it holds: ``activation`` as is and, when
    the noise control was run, ``matched_noise`` with the control's columns in the places
    of the pruned ones, so one set of summaries serves both."""
    views = {"activation": table}
    if "control_correlation" in table:
        control = table.assign(
            pruned_rate=table["control_rate"], correlation=table["control_correlation"]
        )
        views["matched_noise"] = control.drop(columns=["jaccard", "mean_ratio"])
    return views


def _keys_first(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "layer", "sae", "condition", "method", "sparsity", "definition"]
    keys = [key for key in keys if key in frame.columns]
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


def activation_logistic_frame(
    tables_by_sparsity: dict[float, pd.DataFrame], tau: float
) -> pd.DataFrame:
    """One row per alive dense feature and sparsity under activation-level survival: the
    feature survives when its correlation reaches ``tau`` (no correlation: it does not)."""
    frames = []
    for sparsity, table in sorted(tables_by_sparsity.items()):
        rate = table["dense_rate"].to_numpy(dtype=float)
        correlation = np.nan_to_num(table["correlation"].to_numpy(dtype=float), nan=-np.inf)
        alive = rate > 0
        frames.append(
            pd.DataFrame(
                {
                    "firing_rate": rate[alive],
                    "sparsity": sparsity,
                    "survived": correlation[alive] >= tau,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def logistic_fits(
    firing: dict[tuple[str, int], np.ndarray],
    matches: Iterable[MatchResult],
    activation: dict[tuple[str, int, str], pd.DataFrame],
    taus: Sequence[float],
    correlation_taus: Sequence[float],
    reference_seed: int,
) -> tuple[pd.DataFrame, list[str]]:
    """The logistic fit per (model, layer, method) and definition, and its summaries.

    ``activation``: a feature of the dense reference SAE survives when its correlation
    reaches tau (``correlation_taus``). Decoder definitions (cosine ``taus``) need one
    feature set across pairs, so every pair's dense side is the reference-seed SAE
    (``firing`` holds its firing rates): ``paired_init`` is its match with the pruned SAE of
    the same seed; ``cross_seed`` with every other pruned seed, a feature surviving when it
    does in more than half of them.
    """
    groups: dict[tuple, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for match in matches:
        a = match.attrs
        if int(a["seed_a"]) != reference_seed:
            raise ValueError(
                f"the logistic fit compares the dense reference SAE (seed {reference_seed}) "
                f"with pruned SAEs, but got a match of dense seed {a['seed_a']}"
            )
        method, sparsity = parse_condition(a["cond_b"])
        groups[(a["model"], int(a["layer"]), method, pair_definition(a))][sparsity].append(match)
    for (model, layer, cond), table in activation.items():
        method, sparsity = parse_condition(cond)
        groups[(model, int(layer), method, "activation")][sparsity].append(table)

    rank = {d: i for i, d in enumerate(DEFINITIONS)}
    rows, summaries = [], []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], rank[k[3]])):
        model, layer, method, definition = key
        by_sparsity = groups[key]
        if definition == "activation":
            n_pairs = pd.NA
            tables = {s: items[0] for s, items in by_sparsity.items()}
            fits = [
                fit_survival_logit(activation_logistic_frame(tables, tau), tau)
                for tau in correlation_taus
            ]
        else:
            n_pairs = max(len(items) for items in by_sparsity.values())
            fits = [fit_logit_for(firing[(model, layer)], by_sparsity, tau) for tau in taus]
        for fit in fits:
            keys = {"model": model, "layer": layer, "method": method, "definition": definition}
            rows += logistic_rows(fit, **keys, n_pairs=n_pairs)
            header = f"== {model} L{layer} {method} {definition} tau={fit['tau']:g} =="
            summaries.append(f"{header}\n{fit['note'] or ''}\n{fit['summary'] or ''}\n")
    frame = pd.DataFrame(rows)
    frame["n_pairs"] = frame["n_pairs"].astype("Int64")
    return frame, summaries


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
    """Per-feature eval firing rates of the dense reference SAEs (one seed per model and
    layer), by (model, layer)."""
    return {
        (model, layer): rate
        for (model, layer, _), rate in dense_firing_rates(metrics_paths).items()
    }


def dense_firing_rates(metrics_paths: Iterable[str]) -> dict[tuple[str, int, int], np.ndarray]:
    """Per-feature eval firing rates of every dense SAE seed, by (model, layer, seed)."""
    firing = {}
    for path in metrics_paths:
        cfg = read_json(Path(path).with_name("cfg.json"))
        key = (cfg["provenance"]["model"], int(cfg["provenance"]["layer"]), int(cfg["seed"]))
        firing[key] = np.asarray(read_json(path)["firing_rate"], dtype=float)
    return firing
