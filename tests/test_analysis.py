"""Table builders of the analyses, on constructed match results with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prunescope.analysis import (
    activation_quintile_rows,
    activation_survival_tables,
    add_seed_floor,
    logistic_frame,
    perplexity_table,
    quintile_rows,
    quintile_summary,
    rate_records,
    sae_quality_table,
    summarise_pairs,
)
from prunescope.matching import match_dictionaries
from prunescope.plan import seed_pairs


def planted(n: int, keep: np.ndarray, seed: int = 0):
    """Dictionary A and a B that contains exact copies of A's features where ``keep``."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 64)).astype(np.float32)
    b = np.where(keep[:, None], a, rng.normal(size=(n, 64))).astype(np.float32)
    return match_dictionaries(a, b, [0.5, 0.7], device="cpu")


def test_seed_pairs():
    assert seed_pairs([2, 0, 1]) == [(0, 1), (0, 2), (1, 2)]
    assert seed_pairs([0]) == []


def test_summarise_pairs_mean_std_and_single_pair_note():
    keep = np.arange(50) < 25
    records = rate_records(planted(50, keep), model="m", layer=1, condition="dense")
    records += rate_records(
        planted(50, np.arange(50) < 35, 1), model="m", layer=1, condition="dense"
    )
    table = summarise_pairs(records, ["model", "layer", "condition", "tau"])
    row = table[table["tau"] == 0.7].iloc[0]
    assert row["n_pairs"] == 2 and row["n_features"] == 50
    assert row["mnn_mean"] == pytest.approx(0.6)
    assert row["mnn_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    single = summarise_pairs(records[:2], ["model", "layer", "condition", "tau"])
    assert np.isnan(single["mnn_std"]).all() and (single["note"] != "").all()


def test_seed_floor_ratio_and_zero_floor():
    survival = pd.DataFrame(
        {
            "model": ["m", "m"],
            "layer": [1, 1],
            "tau": [0.7, 0.9],
            "mnn_mean": [0.5, 0.4],
            "note": "",
        }
    )
    stability = pd.DataFrame(
        {
            "model": ["m", "m"],
            "layer": [1, 1],
            "tau": [0.7, 0.9],
            "condition": "dense",
            "mnn_mean": [0.05, 0.0],
        }
    )
    out = add_seed_floor(survival, stability)
    assert out.loc[0, "ratio_to_floor"] == pytest.approx(10.0)
    assert np.isnan(out.loc[1, "ratio_to_floor"]) and "zero" in out.loc[1, "note"]


def test_quintile_rows_rare_features_survive():
    n = 100
    firing = np.linspace(0.01, 1.0, n)
    keep = np.arange(n) < 40  # exactly the two rarest quintiles survive
    per_q, summary = quintile_rows(firing, planted(n, keep), 0.7, n_boot=200, seed=0)
    assert per_q["survival"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert summary["Q1"] == 1.0 and summary["Q5"] == 0.0
    assert summary["spearman_rho"] == pytest.approx(-np.sqrt(0.5), abs=0.2)
    assert summary["q1_minus_q5"] == 1.0
    assert np.isnan(summary["q1_q5_ratio"]) and "Q5" in summary["note"]
    assert summary["n_alive"] == n and summary["n_per_quintile"] == "20/20/20/20/20"


def test_quintile_rows_perfectly_monotone_gives_exact_p():
    n = 100
    firing = np.linspace(0.01, 1.0, n)
    rng = np.random.default_rng(0)
    quintile = np.repeat(np.arange(5), 20)
    keep = rng.random(n) < np.array([0.9, 0.7, 0.5, 0.3, 0.1])[quintile]
    per_q, summary = quintile_rows(firing, planted(n, keep), 0.7, n_boot=100, seed=0)
    assert per_q["survival"].is_monotonic_decreasing
    assert summary["spearman_rho"] == -1.0
    assert summary["spearman_p_exact"] == pytest.approx(2 / 120)


def test_logistic_frame_majority_over_seeds():
    firing = np.array([0.1, 0.2, 0.0, 0.4])
    keep_sets = [[True, True, False, False], [True, False, False, False], [True, True, True, False]]
    matches = [planted(4, np.array(k), seed=i) for i, k in enumerate(keep_sets)]
    frame = logistic_frame(firing, {0.5: matches}, 0.7)
    assert frame["survived"].tolist() == [True, True, False]  # dead feature dropped
    assert (frame["n_seeds"] == 3).all() and (frame["sparsity"] == 0.5).all()


def test_perplexity_and_sae_quality_tables():
    ppl = perplexity_table(
        [
            {"model": "m", "condition": "wanda-0.5", "perplexity": 20.0, "n_tokens_scored": 10},
            {"model": "m", "condition": "dense", "perplexity": 10.0, "n_tokens_scored": 10},
        ]
    )
    assert ppl["method"].tolist() == ["dense", "wanda"] and ppl["sparsity"].tolist() == [0, 0.5]
    records = [
        {
            "model": "m",
            "layer": 1,
            "condition": "dense",
            "method": "dense",
            "sparsity": 0.0,
            "seed": s,
            "fvu": f,
            "l0": 8,
            "alive": 60 + s,
            "d_sae": 64,
        }
        for s, f in enumerate([0.1, 0.3])
    ]
    quality = sae_quality_table(records)
    assert quality.loc[0, "fvu"] == pytest.approx(0.2) and quality.loc[0, "n"] == 2
    assert quality.loc[0, "alive"] == pytest.approx(60.5)


def _per_feature(correlation, dense_rate, pruned_rate=None) -> pd.DataFrame:
    n = len(correlation)
    return pd.DataFrame(
        {
            "feature": np.arange(n),
            "dense_rate": dense_rate,
            "pruned_rate": dense_rate if pruned_rate is None else pruned_rate,
            "correlation": correlation,
            "jaccard": np.full(n, np.nan),
            "mean_ratio": np.full(n, np.nan),
        }
    )


def test_activation_survival_tables_count_what_a_direct_computation_counts():
    """100 alive features with known correlations, 5 dead ones: every number by hand."""
    rng = np.random.default_rng(1)
    dense_rate = np.concatenate([np.linspace(0.01, 1.0, 100), np.zeros(5)])
    correlation = np.concatenate([rng.uniform(0, 1, 100), np.full(5, np.nan)])
    correlation[[3, 50]] = np.nan  # alive but silent on the pruned tokens
    pruned_rate = dense_rate.copy()
    pruned_rate[[3, 50]] = 0.0
    table = _per_feature(correlation, dense_rate, pruned_rate)
    taus = [0.5, 0.7]
    survival, table3, quintiles = activation_survival_tables(
        {("tiny", 2, "wanda-0.4"): table}, taus, 0.7, n_boot=50, seed=0
    )
    alive = dense_rate > 0
    for tau in taus:
        row = survival[survival["tau"] == tau].iloc[0]
        expected = np.sum(alive & (np.nan_to_num(correlation, nan=-1) >= tau))
        assert row["n_survived"] == expected and row["n_alive"] == 100
        assert row["survival"] == pytest.approx(expected / 100)
        assert row["n_undefined"] == 2 and row["n_silent"] == 2
    assert table3["tau"].tolist() == [0.7] and table3["condition"].tolist() == ["wanda-0.4"]
    rank = np.argsort(np.argsort(dense_rate[:100], kind="stable"), kind="stable")
    by_q = quintiles[quintiles["tau"] == 0.7].set_index("quintile")["survival"]
    for q in range(1, 6):
        members = (rank // 20) == q - 1
        expected = np.mean(np.nan_to_num(correlation[:100][members], nan=-1) >= 0.7)
        assert by_q[q] == pytest.approx(expected) and table3[f"Q{q}"][0] == pytest.approx(expected)
    keys = ["model", "layer", "condition", "method", "sparsity", "definition"]
    for frame in (survival, table3, quintiles):
        assert (frame["definition"] == "activation").all()
        assert frame.columns[:6].tolist() == keys


def test_activation_quintile_rows_are_quintile_rows_of_a_thresholded_score():
    """The decoder and the activation tables share one summary: the same survived vector
    and score give the same numbers."""
    firing = np.linspace(0.01, 1.0, 100)
    correlation = np.linspace(1.0, 0.0, 100)  # rare features correlate best
    per_q, summary = activation_quintile_rows(
        _per_feature(correlation, firing), 0.6, n_boot=100, seed=0
    )
    direct_q, direct = quintile_summary(
        firing, correlation >= 0.6, correlation, 0.6, n_boot=100, seed=0
    )
    pd.testing.assert_frame_equal(per_q, direct_q)
    assert summary == direct and summary["feature_spearman_rho"] == pytest.approx(-1.0)
