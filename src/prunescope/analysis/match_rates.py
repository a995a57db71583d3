"""RQ1 and RQ2: decoder match rates summarised over seed pairs.

RQ1 (seed stability, Figure 1) matches every pair of seeds within a condition; RQ2
(feature survival, Figure 2) every dense x pruned pair, one row per definition beside the
dense seed-to-seed floor of RQ1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from prunescope.analysis.definitions import (
    KEYS,
    decoder_pair_keys,
    in_definition_order,
    match_keys,
)
from prunescope.match_files import load_matches
from prunescope.matching import MatchResult

METRICS = ("one_way", "mnn", "greedy")


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


def match_rate_records(paths: Iterable[str], side: str) -> list[dict]:
    """Rate rows of saved matches, keyed by the condition on ``side`` (``a`` or ``b``)."""
    records = []
    for path in paths:
        match = load_matches(path)
        a = match.attrs
        seeds = {"seed_a": a["seed_a"], "seed_b": a["seed_b"]}
        records += rate_records(match, **match_keys(a, side), **seeds)
    return records


def survival_records(matches: Iterable[MatchResult]) -> list[dict]:
    """Rate rows of dense x pruned matches, keyed by the pruned condition and the definition."""
    records = []
    for match in matches:
        records += rate_records(match, **decoder_pair_keys(match.attrs))
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
    return in_definition_order(table, ["model", "layer", "method", "sparsity", "definition", "tau"])


def seed_stability_table(match_paths: Iterable[str]) -> pd.DataFrame:
    """RQ1: the rates of every saved seed-pair match within a condition, mean and standard
    deviation over the pairs of each (model, layer, condition) and tau."""
    records = match_rate_records(match_paths, side="a")
    if not records:
        raise ValueError("seed stability needs at least two SAE seeds per condition (sae.seeds)")
    return summarise_pairs(records, ["model", "layer", "condition", "method", "sparsity", "tau"])


def feature_survival_table(match_paths: Iterable[str], stability_path: str) -> pd.DataFrame:
    """RQ2's ``survival_table`` of the saved dense x pruned matches, beside the seed floor
    read from RQ1's table at ``stability_path``."""
    records = survival_records(map(load_matches, match_paths))
    return survival_table(records, pd.read_csv(stability_path))
