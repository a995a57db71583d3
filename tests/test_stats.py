"""Fragility statistics against known answers and brute-force references."""

from __future__ import annotations

import itertools
import math
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from prunescope.stats import (
    DEAD,
    bootstrap_q1_minus_q5,
    feature_spearman,
    firing_rate_quintiles,
    fit_survival_logit,
    q1_q5_ratio,
    spearman_exact,
    survival_by_quintile,
    survival_target,
)


def brute_force_quintiles(rate: np.ndarray, alive: np.ndarray) -> np.ndarray:
    ranked = sorted((i for i in range(len(rate)) if alive[i]), key=lambda i: (rate[i], i))
    labels = np.full(len(rate), DEAD)
    for position, i in enumerate(ranked):
        labels[i] = 5 * position // len(ranked) + 1
    return labels


def quintile_sizes(labels: np.ndarray) -> list[int]:
    return [int((labels == q).sum()) for q in range(1, 6)]


# --- firing_rate_quintiles ---------------------------------------------------


def test_quintiles_order_and_sizes_with_dead_features():
    rng = np.random.default_rng(0)
    rate = rng.permutation(np.arange(1, 11) / 100.0)
    rate = np.concatenate([rate, [0.0, 0.0, 0.0]])
    labels = firing_rate_quintiles(rate)
    assert list(labels[-3:]) == [DEAD] * 3
    assert quintile_sizes(labels) == [2, 2, 2, 2, 2]
    # Q1 holds the two rarest alive features, Q5 the two most frequent.
    assert set(rate[labels == 1]) == {0.01, 0.02}
    assert set(rate[labels == 5]) == {0.09, 0.10}
    alive = labels != DEAD
    order = np.argsort(rate[alive])
    assert np.all(np.diff(labels[alive][order]) >= 0)


def test_quintiles_split_ties_by_index_and_stay_balanced():
    rate = np.full(7, 0.3)
    labels = firing_rate_quintiles(rate)
    assert list(labels) == [1, 1, 2, 3, 3, 4, 5]
    sizes = quintile_sizes(labels)
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n", [5, 13, 101, 998])
def test_quintiles_match_brute_force_with_heavy_ties(n):
    rng = np.random.default_rng(n)
    rate = rng.integers(0, 6, size=n) / 10.0
    labels = firing_rate_quintiles(rate)
    np.testing.assert_array_equal(labels, brute_force_quintiles(rate, rate > 0))
    sizes = quintile_sizes(labels)
    assert max(sizes) - min(sizes) <= 1


def test_quintiles_use_explicit_alive_mask():
    rate = np.array([0.5, 0.1, 0.2, 0.3, 0.4, 0.6])
    alive = np.array([False, True, True, True, True, True])
    labels = firing_rate_quintiles(rate, alive)
    assert list(labels) == [DEAD, 1, 2, 3, 4, 5]


def test_quintiles_with_fewer_alive_than_five_leave_empty_bins():
    labels = firing_rate_quintiles(np.array([0.3, 0.1, 0.2, 0.0]))
    assert list(labels) == [4, 1, 2, DEAD]


@pytest.mark.parametrize("bad", [[0.1, -0.2], [0.1, np.nan], [[0.1, 0.2]]])
def test_quintiles_reject_bad_rates(bad):
    with pytest.raises(ValueError):
        firing_rate_quintiles(np.array(bad))


# --- survival_by_quintile ----------------------------------------------------


def test_survival_table_counts():
    quintile = np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, DEAD])
    survived = np.array([1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
    rate = np.array([0.1, 0.3, 1, 1, 2, 4, 5, 5, 8, 10, 0.0])
    table = survival_by_quintile(quintile, survived, rate)
    assert list(table["quintile"]) == [1, 2, 3, 4, 5]
    assert list(table["n_features"]) == [2, 2, 2, 2, 2]
    assert list(table["n_survived"]) == [2, 1, 1, 0, 0]
    np.testing.assert_allclose(table["survival"], [1.0, 0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(table["mean_firing_rate"], [0.2, 1.0, 3.0, 5.0, 9.0])
    assert (table["note"] == "").all()


def test_empty_quintile_gives_nan_with_note():
    quintile = np.array([1, 2, 4, 5, DEAD])
    survived = np.array([True, False, False, False, True])
    table = survival_by_quintile(quintile, survived, np.array([1, 2, 3, 4, 0.0]))
    q3 = table.set_index("quintile").loc[3]
    assert q3["n_features"] == 0 and q3["n_survived"] == 0
    assert math.isnan(q3["survival"]) and math.isnan(q3["mean_firing_rate"])
    assert "Q3" in q3["note"] and "no alive features" in q3["note"]
    assert table.set_index("quintile").loc[4, "survival"] == 0.0


def test_survival_table_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        survival_by_quintile(np.array([1, 2]), np.array([True]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        survival_by_quintile(np.array([1, 6]), np.array([True, False]), np.array([1.0, 2.0]))


# --- spearman_exact ----------------------------------------------------------


def brute_force_exact_spearman(x, y) -> tuple[float, float]:
    """Textbook rho = 1 - 6 sum d^2 / (n (n^2 - 1)) over every ordering of y's ranks."""
    n = len(x)
    rank_x = rank(x)

    def rho_of(ranks_y) -> float:
        d2 = sum((a - b) ** 2 for a, b in zip(rank_x, ranks_y, strict=True))
        return 1 - 6 * d2 / (n * (n * n - 1))

    rho_obs = rho_of(rank(y))
    null = [rho_of(permutation) for permutation in itertools.permutations(rank(y))]
    return rho_obs, sum(abs(rho) >= abs(rho_obs) - 1e-12 for rho in null) / len(null)


def rank(values) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    for position, i in enumerate(order):
        ranks[i] = position + 1
    return ranks


def test_spearman_exact_perfect_decrease():
    rho, p = spearman_exact([0.01, 0.02, 0.05, 0.1, 0.3], [0.76, 0.5, 0.4, 0.2, 0.146])
    assert rho == pytest.approx(-1.0)
    assert p == pytest.approx(2 / 120)


def test_spearman_exact_perfect_increase():
    rho, p = spearman_exact([1, 2, 3, 4, 5], [0.1, 0.2, 0.3, 0.4, 0.5])
    assert rho == pytest.approx(1.0)
    assert p == pytest.approx(2 / 120)


@pytest.mark.parametrize("y", [[2, 1, 4, 3, 5], [3, 1, 5, 2, 4], [5, 3, 4, 1, 2], [1, 5, 2, 4, 3]])
def test_spearman_exact_intermediate_against_enumeration(y):
    x = [0.1, 0.2, 0.3, 0.4, 0.5]
    rho, p = spearman_exact(x, y)
    expected_rho, expected_p = brute_force_exact_spearman(x, y)
    assert rho == pytest.approx(expected_rho)
    assert p == pytest.approx(expected_p)
    assert rho == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


def test_spearman_exact_known_intermediate_value():
    rho, p = spearman_exact([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(0.8)
    # |rho| >= 0.8 needs sum d^2 <= 4 (1 + 4 + 3 orderings) or its mirror: 16 of 120.
    assert p == pytest.approx(16 / 120)


def test_spearman_exact_with_ties_matches_scipy_rho_and_enumeration():
    x, y = [1, 2, 3, 4, 5], [0.5, 0.5, 0.2, 0.1, 0.1]
    rho, p = spearman_exact(x, y)
    assert rho == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
    null = [scipy_stats.spearmanr(x, list(perm)).statistic for perm in itertools.permutations(y)]
    assert p == pytest.approx(np.mean(np.abs(null) >= abs(rho) - 1e-9))


def test_spearman_exact_nan_and_constant_inputs():
    assert all(math.isnan(v) for v in spearman_exact([1, 2, 3, 4, 5], [0.1, np.nan, 0, 0, 0]))
    assert all(math.isnan(v) for v in spearman_exact([1, 2, 3, 4, 5], [0.2] * 5))
    assert all(math.isnan(v) for v in spearman_exact([7] * 5, [1, 2, 3, 4, 5]))


def test_spearman_exact_rejects_bad_sizes():
    with pytest.raises(ValueError):
        spearman_exact([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        spearman_exact(list(range(12)), list(range(12)))


# --- bootstrap_q1_minus_q5 ---------------------------------------------------


def make_quintile_data(survival_by_q, n_per_q=40):
    quintile, survived = [], []
    for q, rate in enumerate(survival_by_q, start=1):
        n_alive = round(rate * n_per_q)
        quintile += [q] * n_per_q
        survived += [True] * n_alive + [False] * (n_per_q - n_alive)
    return np.array(quintile), np.array(survived)


def test_bootstrap_contains_estimate_and_is_deterministic():
    quintile, survived = make_quintile_data([0.75, 0.6, 0.5, 0.3, 0.15])
    first = bootstrap_q1_minus_q5(quintile, survived, n_boot=2000, seed=3)
    again = bootstrap_q1_minus_q5(quintile, survived, n_boot=2000, seed=3)
    assert first["estimate"] == pytest.approx(0.6)
    assert first["low"] < first["estimate"] < first["high"]
    assert first == again
    # Few replicates, so the interpolated percentiles show which seed drew them.
    short = [bootstrap_q1_minus_q5(quintile, survived, n_boot=25, seed=s) for s in (3, 4)]
    assert (short[0]["low"], short[0]["high"]) != (short[1]["low"], short[1]["high"])
    assert first["n_boot"] == 2000 and first["note"] == ""


def test_bootstrap_matches_index_resampling_reference():
    quintile, survived = make_quintile_data([0.7, 0.5, 0.5, 0.5, 0.2], n_per_q=30)
    result = bootstrap_q1_minus_q5(quintile, survived, n_boot=20000, seed=0, ci=0.9)
    rng = np.random.default_rng(123)
    q1, q5 = survived[quintile == 1], survived[quintile == 5]
    draws = rng.integers(0, 30, size=(2, 20000, 30))
    reference = q1[draws[0]].mean(axis=1) - q5[draws[1]].mean(axis=1)
    low, high = np.quantile(reference, [0.05, 0.95])
    assert result["low"] == pytest.approx(low, abs=0.02)
    assert result["high"] == pytest.approx(high, abs=0.02)


def test_bootstrap_zero_width_when_all_or_nothing():
    quintile, survived = make_quintile_data([1.0, 0.5, 0.5, 0.5, 0.0])
    result = bootstrap_q1_minus_q5(quintile, survived, n_boot=500, seed=0)
    assert result["estimate"] == result["low"] == result["high"] == 1.0


def test_bootstrap_empty_quintile_gives_nan_with_note():
    quintile = np.array([1, 1, 2, 3, 4])
    survived = np.array([True, False, True, True, False])
    result = bootstrap_q1_minus_q5(quintile, survived)
    assert all(math.isnan(result[key]) for key in ("estimate", "low", "high"))
    assert "Q5" in result["note"]


# --- feature_spearman --------------------------------------------------------


def test_feature_spearman_uses_alive_features_only():
    rng = np.random.default_rng(0)
    rate = rng.uniform(0.001, 0.2, size=200)
    cosine = np.clip(1.0 - 3 * rate + rng.normal(0, 0.1, size=200), -1, 1)
    dead_rate = np.zeros(50)
    dead_cosine = np.ones(50)
    rho, p = feature_spearman(np.r_[rate, dead_rate], np.r_[cosine, dead_cosine])
    expected = scipy_stats.spearmanr(rate, cosine)
    assert rho == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)
    assert rho < 0


def test_feature_spearman_degenerate_gives_nan():
    assert all(math.isnan(v) for v in feature_spearman([0.1, 0.2, 0.0], [0.5, 0.6, 0.7]))
    assert all(math.isnan(v) for v in feature_spearman([0.1, 0.2, 0.3], [0.5, 0.5, 0.5]))


# --- survival_target and q1_q5_ratio -----------------------------------------


def test_survival_target_threshold_is_strict():
    target = survival_target(np.array([0.0, 0.5, 2 / 3, 1.0]))
    assert list(target) == [False, False, True, True]
    with pytest.raises(ValueError):
        survival_target(np.array([0.2, 1.5]))


def test_q1_q5_ratio():
    ratio, note = q1_q5_ratio(0.760, 0.146)  # Gemma 3 magnitude s=0.3 cell of paper Table 3
    assert ratio == pytest.approx(5.2, abs=0.05) and note == ""
    ratio, note = q1_q5_ratio(0.5, 0.0)
    assert math.isnan(ratio) and "S(Q5) is 0" in note
    ratio, note = q1_q5_ratio(float("nan"), 0.2)
    assert math.isnan(ratio) and "NaN" in note


# --- fit_survival_logit ------------------------------------------------------


TRUE_COEFFICIENTS = {"const": 1.0, "log_firing_rate": -1.5, "sparsity": -2.0}


def synthetic_survival(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    log_rate = rng.uniform(-3.0, 0.0, size=n)
    sparsity = rng.uniform(0.0, 0.9, size=n)
    eta = (
        TRUE_COEFFICIENTS["const"]
        + TRUE_COEFFICIENTS["log_firing_rate"] * log_rate
        + TRUE_COEFFICIENTS["sparsity"] * sparsity
    )
    survived = rng.random(n) < 1.0 / (1.0 + np.exp(-eta))
    return pd.DataFrame(
        {"firing_rate": np.exp(log_rate), "sparsity": sparsity, "survived": survived}
    )


def brute_force_auc(outcome: np.ndarray, score: np.ndarray) -> float:
    positive, negative = score[outcome], score[~outcome]
    wins = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return (wins + 0.5 * ties) / (len(positive) * len(negative))


def test_logit_recovers_known_coefficients():
    df = synthetic_survival(20000, seed=0)
    fit = fit_survival_logit(df, tau=0.7)
    assert fit["converged"] and fit["note"] == ""
    assert fit["n"] == 20000 and fit["n_survived"] == int(df["survived"].sum())
    assert fit["tau"] == 0.7
    for term, true_value in TRUE_COEFFICIENTS.items():
        estimate = fit["coefficients"][term]
        assert estimate["se"] < 0.1
        assert abs(estimate["coef"] - true_value) < 3 * estimate["se"]
        assert estimate["z"] == pytest.approx(estimate["coef"] / estimate["se"])
        assert estimate["p"] < 1e-6
    assert "Logit" in fit["summary"] and "log_firing_rate" in fit["summary"]


def test_logit_auc_and_accuracy_match_recomputed_probabilities():
    df = synthetic_survival(3000, seed=1)
    fit = fit_survival_logit(df, tau=0.6)
    coef = {term: fit["coefficients"][term]["coef"] for term in TRUE_COEFFICIENTS}
    eta = coef["const"] + coef["log_firing_rate"] * np.log(df["firing_rate"])
    probability = 1.0 / (1.0 + np.exp(-(eta + coef["sparsity"] * df["sparsity"])))
    outcome = df["survived"].to_numpy()
    assert fit["auc"] > 0.5
    assert fit["auc"] == pytest.approx(roc_auc_score(outcome, probability))
    assert fit["auc"] == pytest.approx(brute_force_auc(outcome, probability.to_numpy()))
    assert fit["accuracy"] == pytest.approx(np.mean((probability > 0.5) == outcome))


def all_nan(fit: dict) -> bool:
    values = [v for term in fit["coefficients"].values() for v in term.values()]
    return all(math.isnan(v) for v in [*values, fit["auc"], fit["accuracy"]])


def test_logit_perfect_separation_returns_nan_with_note():
    rate = np.geomspace(1e-4, 0.5, 60)
    df = pd.DataFrame({"firing_rate": rate, "sparsity": np.tile([0.3, 0.5], 30)})
    df["survived"] = rate < 0.01
    fit = fit_survival_logit(df, tau=0.7)
    assert all_nan(fit) and not fit["converged"]
    assert "separated" in fit["note"]


def test_logit_quasi_separation_returns_nan_with_note():
    rate = np.geomspace(1e-4, 0.5, 61)
    df = pd.DataFrame({"firing_rate": rate, "sparsity": np.tile([0.3, 0.5], 31)[:61]})
    df["survived"] = rate <= rate[30]
    df.loc[31, "firing_rate"] = rate[30]  # same rate on both sides: quasi-complete
    fit = fit_survival_logit(df, tau=0.7)
    assert all_nan(fit) and "separated" in fit["note"]


def test_logit_single_class_returns_nan_with_note():
    df = synthetic_survival(100, seed=2)
    df["survived"] = True
    fit = fit_survival_logit(df, tau=0.7)
    assert all_nan(fit) and "survived=True" in fit["note"]
    assert fit["n"] == 100 and fit["n_survived"] == 100


def test_logit_single_sparsity_level_drops_the_term_with_note():
    df = synthetic_survival(4000, seed=3)
    df["sparsity"] = 0.5
    fit = fit_survival_logit(df, tau=0.7)
    assert math.isnan(fit["coefficients"]["sparsity"]["coef"])
    assert "single sparsity level" in fit["note"]
    assert fit["coefficients"]["log_firing_rate"]["coef"] == pytest.approx(-1.5, abs=0.3)


def test_logit_rejects_bad_frames():
    df = synthetic_survival(50, seed=4)
    with pytest.raises(ValueError, match="sparsity"):
        fit_survival_logit(df.drop(columns="sparsity"), tau=0.7)
    df.loc[0, "firing_rate"] = 0.0
    with pytest.raises(ValueError, match="firing_rate"):
        fit_survival_logit(df, tau=0.7)


def test_a_fit_summary_carries_no_date_or_time_so_reruns_write_the_same_file():
    from prunescope.stats import timeless_summary

    text = (
        "Date:                Mon, 30 Nov 2026   Pseudo R-squ.:               0.3021\n"
        "Time:                        07:22:28   Log-Likelihood:              -63.565\n"
    )
    got = timeless_summary(text)
    assert "2026" not in got and "07:22:28" not in got
    assert "Pseudo R-squ.:               0.3021" in got and "-63.565" in got
    assert [len(line) for line in got.splitlines()] == [len(line) for line in text.splitlines()]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"firing_rate": rng.uniform(0.001, 0.5, 300), "sparsity": rng.choice([0.2, 0.4], 300)}
    )
    frame["survived"] = rng.uniform(size=300) < frame["firing_rate"] * 2
    summary = fit_survival_logit(frame, 0.7)["summary"]
    assert "Logit Regression Results" in summary
    assert not re.search(r"\d\d:\d\d:\d\d", summary) and str(date.today().year) not in summary
