"""RQ4, Table 3: survival of the dense features by firing-rate quintile.

``quintile_summary`` computes one pair's per-quintile survival and Table 3's statistics
whatever defines survival (a decoder match, an activation correlation); the decoder tables
average them over the seed pairs of each definition and set them beside the seed floor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from prunescope.analysis.definitions import (
    KEYS,
    decoder_pair_keys,
    in_definition_order,
    pair_definition,
)
from prunescope.analysis.inputs import dense_firing_rates
from prunescope.match_files import load_matches
from prunescope.matching import MatchResult, best_cosine, survival_per_feature, swap_sides
from prunescope.stats import (
    bootstrap_q1_minus_q5,
    feature_spearman,
    firing_rate_quintiles,
    q1_q5_ratio,
    spearman_exact,
    survival_by_quintile,
)

log = logging.getLogger("prunescope")


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
            keys = decoder_pair_keys(a)
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
    long = in_definition_order(long[long_columns], [*order, "quintile"])
    return in_definition_order(table3, order), long


def quintile_survival_tables(
    dense_metrics: Iterable[str],
    match_paths: Iterable[str],
    taus: Sequence[float],
    primary_tau: float,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``decoder_quintile_tables`` of the saved matches (dense x pruned and the dense seed
    floor), quintiles by each dense SAE's own eval firing rates (its ``metrics.json`` in
    ``dense_metrics``, ``cfg.json`` beside it). Table 3 and every row's note are logged."""
    firing = dense_firing_rates(dense_metrics)
    table3, long = decoder_quintile_tables(
        map(load_matches, match_paths), firing, taus, primary_tau, n_boot=n_boot, seed=seed
    )
    log.info("Table 3 (tau %.2f):\n%s", primary_tau, table3.to_string())
    for _, row in table3[table3["note"] != ""].iterrows():
        log.info("%s %s %s: %s", row["model"], row["condition"], row["definition"], row["note"])
    return table3, long
