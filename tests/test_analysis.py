"""Table builders of the analyses, on constructed match results with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunescope.analysis import (
    DEFINITIONS,
    activation_quintile_rows,
    activation_survival_tables,
    add_seed_floor,
    decoder_quintile_tables,
    logistic_fits,
    logistic_frame,
    mean_over_pairs,
    pair_definition,
    perplexity_table,
    quintile_rows,
    quintile_summary,
    rate_records,
    sae_quality_table,
    summarise_pairs,
    survival_records,
    survival_table,
    write_survival_table,
)
from prunescope.checks import check_removed_keys
from prunescope.conditions import seed_pairs
from prunescope.errors import UserInputError
from prunescope.match_files import save_matches
from prunescope.matching import match_dictionaries, swap_sides
from prunescope.paths import match_path
from prunescope.plan import logistic_matches, survival_matches
from prunescope.stats import fit_survival_logit


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
        {("tiny", 2, "wanda-0.4", "trained here"): table}, taus, 0.7, n_boot=50, seed=0
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
    keys = ["model", "layer", "sae", "condition", "method", "sparsity", "definition"]
    for frame in (survival, table3, quintiles):
        assert (frame["definition"] == "activation").all()
        assert (frame["sae"] == "trained here").all()
        assert frame.columns[:7].tolist() == keys


def test_noise_control_rows_sit_beside_the_activation_rows():
    rng = np.random.default_rng(2)
    dense_rate = np.linspace(0.01, 1.0, 50)
    table = _per_feature(rng.uniform(0, 1, 50), dense_rate)
    control = rng.uniform(0, 1, 50)
    table["control_rate"] = dense_rate / 2
    table["control_correlation"] = control
    survival, table3, quintiles = activation_survival_tables(
        {("tiny", 2, "magnitude-0.6", "trained here"): table}, [0.5], 0.5, n_boot=20, seed=0
    )
    assert survival["definition"].tolist() == ["activation", "matched_noise"]
    noise = survival.set_index("definition").loc["matched_noise"]
    assert noise["n_survived"] == np.sum(control >= 0.5)
    assert set(table3["definition"]) == {"activation", "matched_noise"}
    assert set(quintiles["definition"]) == {"activation", "matched_noise"}
    # the control's own rows equal the activation rows of a table holding only the control
    alone = _per_feature(control, dense_rate, dense_rate / 2)
    _, direct, _ = activation_survival_tables(
        {("tiny", 2, "magnitude-0.6", "trained here"): alone}, [0.5], 0.5, n_boot=20, seed=0
    )
    got = table3[table3["definition"] == "matched_noise"].drop(columns="definition")
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), direct.drop(columns="definition").reset_index(drop=True)
    )


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


# --- decoder survival by definition: paired_init, cross_seed, seed_floor ------------------------

SEEDS = (0, 1, 2)
TAUS = (0.3, 0.6)
N_FEATURES, WIDTH = 40, 16


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float32)
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float64)


def brute_mnn(dec_a: np.ndarray, dec_b: np.ndarray, tau: float) -> np.ndarray:
    """Per A feature: mutual nearest neighbours with cosine >= tau, from the full matrix."""
    sims = _unit(dec_a) @ _unit(dec_b).T
    best_b = sims.argmax(axis=1)
    best_a = sims.argmax(axis=0)
    rows = np.arange(len(dec_a))
    return (best_a[best_b] == rows) & (sims[rows, best_b] >= tau)


def brute_quintiles(firing: np.ndarray, survived: np.ndarray) -> np.ndarray:
    """Survival of Q1..Q5 of the alive features ranked by firing rate (ties by index)."""
    alive = np.flatnonzero(firing > 0)
    order = alive[np.argsort(firing[alive], kind="stable")]
    label = np.arange(len(order)) * 5 // len(order)
    return np.array([survived[order[label == q]].mean() for q in range(5)])


def study_decoders():
    """Dense and pruned decoders of three seeds (each seed's pair shares an initial
    dictionary) and each dense SAE's firing rates, by (model, layer, seed)."""
    rng = np.random.default_rng(7)
    init = {s: rng.normal(size=(N_FEATURES, WIDTH)) for s in SEEDS}
    dense = {s: init[s] + 0.3 * rng.normal(size=(N_FEATURES, WIDTH)) for s in SEEDS}
    pruned = {s: init[s] + 0.5 * rng.normal(size=(N_FEATURES, WIDTH)) for s in SEEDS}
    firing = {}
    for s in SEEDS:
        rate = rng.uniform(0.01, 1.0, N_FEATURES)
        rate[rng.choice(N_FEATURES, 5, replace=False)] = 0.0  # dead features
        firing[("m", 1, s)] = rate
    return dense, pruned, firing


@pytest.fixture(scope="module")
def decoders():
    return study_decoders()


def _match(dec_a, dec_b, cond_b, seed_a, seed_b):
    match = match_dictionaries(dec_a, dec_b, TAUS, device="cpu")
    match.attrs = {
        "model": "m",
        "layer": 1,
        "cond_a": "dense",
        "seed_a": seed_a,
        "cond_b": cond_b,
        "seed_b": seed_b,
    }
    return match


def study_matches(dense, pruned):
    """Every dense x pruned seed pair's match, and every dense seed pair's (a < b)."""
    survival = [_match(dense[a], pruned[b], "wanda-0.5", a, b) for a in SEEDS for b in SEEDS]
    floor = [_match(dense[a], dense[b], "dense", a, b) for a, b in seed_pairs(SEEDS)]
    return survival, floor


@pytest.fixture(scope="module")
def matches(decoders):
    dense, pruned, _ = decoders
    return study_matches(dense, pruned)


def save_study(root: Path, matches: list, firing: dict) -> dict[str, list[str]]:
    """``matches`` saved as the workflow saves them, by the kind of pair each is
    (``paired_init``, ``cross_seed``, ``seed_floor``, or ``stability`` for two SAEs of one
    pruned condition), and each dense SAE's ``metrics.json`` (with ``cfg.json``) under
    ``dense_metrics``."""
    paths: dict[str, list[str]] = {"dense_metrics": []}
    for match in matches:
        a = match.attrs
        name = f"{a['cond_a']}_seed{a['seed_a']}__{a['cond_b']}_seed{a['seed_b']}.h5"
        kind = "stability" if a["cond_a"] != "dense" else pair_definition(a)
        save_matches(match, root / name)
        paths.setdefault(kind, []).append(str(root / name))
    for (model, layer, seed), rate in firing.items():
        folder = root / f"sae/{model}/dense/L{layer}/seed{seed}"
        folder.mkdir(parents=True)
        provenance = {"model": model, "layer": layer, "condition": "dense"}
        (folder / "cfg.json").write_text(json.dumps({"seed": seed, "provenance": provenance}))
        (folder / "metrics.json").write_text(json.dumps({"firing_rate": rate.tolist()}))
        paths["dense_metrics"].append(str(folder / "metrics.json"))
    return paths


def _pairs(definition):
    """The (dense seed, other seed, other side) pairs a definition averages over."""
    if definition == "paired_init":
        return [(s, s, "pruned") for s in SEEDS]
    if definition == "cross_seed":
        return [(a, b, "pruned") for a in SEEDS for b in SEEDS if a != b]
    return [(a, b, "dense") for a in SEEDS for b in SEEDS if a != b]  # both sides of a < b


def saved_study(root: Path):
    """The study's decoders and firing rates, its decoder-survival and floor matches, and
    ``save_study``'s paths of those saved under ``root`` with the seed pairs within the
    pruned condition (``stability``) beside them."""
    dense, pruned, firing = study_decoders()
    survival, floor = study_matches(dense, pruned)
    within = []
    for a, b in seed_pairs(SEEDS):
        match = _match(pruned[a], pruned[b], "wanda-0.5", a, b)
        match.attrs["cond_a"] = "wanda-0.5"
        within.append(match)
    paths = save_study(root, survival + floor + within, firing)
    return dense, pruned, firing, survival + floor, paths


def test_pair_definition_names_what_a_match_measures():
    attrs = {"cond_a": "dense", "seed_a": 1, "cond_b": "wanda-0.5", "seed_b": 1}
    assert pair_definition(attrs) == "paired_init"
    assert pair_definition(attrs | {"seed_b": 2}) == "cross_seed"
    assert pair_definition(attrs | {"cond_b": "dense", "seed_b": 2}) == "seed_floor"
    with pytest.raises(ValueError, match="itself"):
        pair_definition(attrs | {"cond_b": "dense"})
    with pytest.raises(ValueError, match="side A"):
        pair_definition(attrs | {"cond_a": "wanda-0.5"})


def test_swap_sides_is_the_match_read_from_b(decoders):
    dense, pruned, _ = decoders
    forward = _match(dense[0], pruned[1], "wanda-0.5", 0, 1)
    swapped = swap_sides(forward)
    direct = match_dictionaries(pruned[1], dense[0], TAUS, device="cpu")
    for name in ("a_best", "a_best_cos", "b_best", "b_best_cos", "mnn", "greedy_partner"):
        np.testing.assert_array_equal(getattr(swapped, name), getattr(direct, name), name)
    assert swapped.attrs["seed_a"] == 1 and swapped.attrs["cond_a"] == "wanda-0.5"
    assert swapped.attrs["seed_b"] == 0 and swapped.attrs["cond_b"] == "dense"
    for tau in TAUS:
        mnn = swapped.mnn & (swapped.a_best_cos >= np.float32(tau))
        np.testing.assert_array_equal(mnn, brute_mnn(pruned[1], dense[0], tau))


def test_survival_table_reports_each_definition_beside_the_floor(decoders, matches):
    dense, pruned, _ = decoders
    survival, floor = matches
    floor_records = []
    for match in floor:
        floor_records += rate_records(
            match, model="m", layer=1, condition="dense", method="dense", sparsity=0.0
        )
    by = ["model", "layer", "condition", "method", "sparsity", "tau"]
    stability = summarise_pairs(floor_records, by)
    table = survival_table(survival_records(survival), stability)
    assert table.columns[:7].tolist() == [
        "model",
        "layer",
        "condition",
        "method",
        "sparsity",
        "definition",
        "tau",
    ]
    assert table["definition"].tolist() == ["paired_init"] * 2 + ["cross_seed"] * 2
    for tau in TAUS:
        floor_mnn = np.mean(
            [brute_mnn(dense[a], dense[b], tau).mean() for a, b in seed_pairs(SEEDS)]
        )
        for definition in ("paired_init", "cross_seed"):
            rates = [brute_mnn(dense[a], pruned[b], tau).mean() for a, b, _ in _pairs(definition)]
            row = table[(table["tau"] == tau) & (table["definition"] == definition)].iloc[0]
            assert row["n_pairs"] == len(rates) and row["n_features"] == N_FEATURES
            assert row["mnn_mean"] == pytest.approx(np.mean(rates))
            assert row["mnn_std"] == pytest.approx(np.std(rates, ddof=1))
            assert row["seed_floor_mnn"] == pytest.approx(floor_mnn)
            assert row["ratio_to_floor"] == pytest.approx(np.mean(rates) / floor_mnn)
    # the shared initial dictionary is what paired_init measures
    at = table.set_index(["tau", "definition"])["mnn_mean"]
    assert at[(0.6, "paired_init")] > 2 * at[(0.6, "cross_seed")]


def test_quintile_tables_average_every_pair_of_each_definition(decoders, matches):
    dense, pruned, firing = decoders
    survival, floor = matches
    table3, long = decoder_quintile_tables(survival + floor, firing, TAUS, 0.6, n_boot=20, seed=0)
    assert table3["tau"].unique().tolist() == [0.6]
    assert table3["definition"].tolist() == ["seed_floor", "paired_init", "cross_seed"]
    assert table3["condition"].tolist() == ["dense", "wanda-0.5", "wanda-0.5"]
    expected = {}
    for tau in TAUS:
        for definition in ("seed_floor", "paired_init", "cross_seed"):
            per_pair = []
            for a, b, side in _pairs(definition):
                other = dense[b] if side == "dense" else pruned[b]
                survived = brute_mnn(dense[a], other, tau)
                per_pair.append(brute_quintiles(firing[("m", 1, a)], survived))
            expected[(tau, definition)] = np.array(per_pair)
    for tau in TAUS:
        floor_q = expected[(tau, "seed_floor")].mean(axis=0)
        for definition in ("seed_floor", "paired_init", "cross_seed"):
            per_pair = expected[(tau, definition)]
            mean, std = per_pair.mean(axis=0), per_pair.std(axis=0, ddof=1)
            rows = long[(long["tau"] == tau) & (long["definition"] == definition)]
            assert rows["quintile"].tolist() == [1, 2, 3, 4, 5]
            np.testing.assert_allclose(rows["survival"], mean)
            np.testing.assert_allclose(rows["survival_std"], std)
            assert (rows["n_pairs"] == len(per_pair)).all() and (rows["n_features"] == 7).all()
            if definition == "seed_floor":
                assert rows["floor"].isna().all() and rows["ratio_to_floor"].isna().all()
            else:
                np.testing.assert_allclose(rows["floor"], floor_q)
                np.testing.assert_allclose(rows["ratio_to_floor"], mean / floor_q)
            if tau != 0.6:
                continue
            row = table3[table3["definition"] == definition].iloc[0]
            assert row["n_pairs"] == len(per_pair) and row["n_alive"] == N_FEATURES - 5
            np.testing.assert_allclose([row[f"Q{q}"] for q in range(1, 6)], mean)
            np.testing.assert_allclose([row[f"Q{q}_std"] for q in range(1, 6)], std)
            assert row["q1_minus_q5"] == pytest.approx(np.mean(per_pair[:, 0] - per_pair[:, 4]))
            if mean[4] > 0:  # the ratio of the mean survivals, never a mean of ratios
                assert row["q1_q5_ratio"] == pytest.approx(mean[0] / mean[4])
            else:
                assert np.isnan(row["q1_q5_ratio"])
            ratios = [row[f"Q{q}_to_floor"] for q in range(1, 6)]
            if definition == "seed_floor":
                assert np.isnan(ratios).all()
            else:
                np.testing.assert_allclose(ratios, mean / floor_q)
    assert set(table3["definition"]) <= set(DEFINITIONS)


def test_mean_over_pairs_leaves_out_undefined_pairs_and_says_so():
    assert mean_over_pairs([0.2, 0.4], "x") == (
        pytest.approx(0.3),
        pytest.approx(0.1414, abs=1e-4),
        "",
    )
    mean, std, note = mean_over_pairs([0.2, np.nan, 0.4], "q1_q5_ratio")
    assert mean == pytest.approx(0.3) and note == (
        "q1_q5_ratio undefined in 1 of 3 pairs; mean over the other 2"
    )
    mean, std, note = mean_over_pairs([np.nan], "x")
    assert np.isnan(mean) and np.isnan(std) and note == "x undefined in every pair"


def logistic_study(dense, pruned, firing):
    """What the logistic fit reads at two sparsities of one method: the pruned decoders of
    each seed (``moved``), the reference seed's matches with them, and the activation
    tables of the reference SAE."""
    rate = firing[("m", 1, 0)]
    rng = np.random.default_rng(3)
    # the sparser condition moves the pruned decoders further from the dense ones
    moved = {
        (cond, b): pruned[b] + shift * rng.normal(size=pruned[b].shape)
        for cond, shift in (("wanda-0.3", 0.0), ("wanda-0.5", 0.4))
        for b in SEEDS
    }
    matches = [_match(dense[0], moved[key], key[0], 0, key[1]) for key in moved]
    activation = {}
    for cond in ("wanda-0.3", "wanda-0.5"):
        correlation = rng.uniform(0, 1, N_FEATURES)
        correlation[:3] = np.nan
        activation[("m", 1, cond)] = _per_feature(correlation, rate)
    return moved, matches, activation


def test_logistic_fits_per_definition_match_direct_fits(decoders):
    dense, pruned, firing = decoders
    rate = firing[("m", 1, 0)]
    moved, matches, activation = logistic_study(dense, pruned, firing)
    table, summaries = logistic_fits(
        {("m", 1): rate}, matches, activation, [0.6], [0.5], reference_seed=0
    )
    fits = table.drop_duplicates(["definition", "tau"])
    assert fits["definition"].tolist() == ["activation", "paired_init", "cross_seed"]
    assert fits["n_pairs"].isna().tolist() == [True, False, False]
    assert fits["n_pairs"].iloc[1:].tolist() == [1, 2]
    assert len(summaries) == 3 and "cross_seed tau=0.6" in summaries[2]
    assert fits["converged"].all()
    alive = rate > 0
    direct = {}
    for definition in ("activation", "paired_init", "cross_seed"):
        frames = []
        for sparsity, cond in ((0.3, "wanda-0.3"), (0.5, "wanda-0.5")):
            if definition == "activation":
                corr = activation[("m", 1, cond)]["correlation"].to_numpy()
                survived = np.nan_to_num(corr, nan=-1.0) >= 0.5
            else:
                others = [0] if definition == "paired_init" else [1, 2]
                votes = [brute_mnn(dense[0], moved[(cond, b)], 0.6) for b in others]
                survived = np.mean(votes, axis=0) > 0.5
            frames.append(
                pd.DataFrame(
                    {"firing_rate": rate[alive], "sparsity": sparsity, "survived": survived[alive]}
                )
            )
        tau = 0.5 if definition == "activation" else 0.6
        direct[definition] = fit_survival_logit(pd.concat(frames, ignore_index=True), tau)
    for definition, fit in direct.items():
        rows = table[table["definition"] == definition].set_index("term")
        assert rows["n"].iloc[0] == fit["n"] and rows["n_survived"].iloc[0] == fit["n_survived"]
        for term, values in fit["coefficients"].items():
            assert rows.loc[term, "coef"] == pytest.approx(values["coef"], nan_ok=True)
    with pytest.raises(ValueError, match="dense seed 1"):
        logistic_fits(
            {("m", 1): rate}, [_match(dense[1], pruned[1], "wanda-0.3", 1, 1)], {}, [0.3], [0.5], 0
        )


def test_the_guard_refuses_a_survival_table_without_a_known_definition(tmp_path):
    path = tmp_path / "survival.csv"
    frame = pd.DataFrame({"condition": ["wanda-0.5"], "tau": [0.7], "mnn_mean": [0.9]})
    with pytest.raises(ValueError, match="has no 'definition' column"):
        write_survival_table(path, frame)
    with pytest.raises(ValueError, match=r"\['reference'\]"):
        write_survival_table(path, frame.assign(definition="reference"))
    assert not path.exists()
    write_survival_table(path, frame.assign(definition="cross_seed"))
    assert pd.read_csv(path)["definition"].tolist() == ["cross_seed"]


def test_survival_matches_every_seed_pair_and_the_removed_key_says_why():
    config = {"sae": {"seeds": [0, 1, 2]}, "analysis": {"reference_seed": 1}}
    paths = survival_matches(config, "m", 1, "wanda-0.5")
    assert paths == [match_path("m", 1, "dense", a, "wanda-0.5", b) for a in SEEDS for b in SEEDS]
    assert logistic_matches(config, "m", 1, "wanda-0.5") == [
        match_path("m", 1, "dense", 1, "wanda-0.5", b) for b in SEEDS
    ]
    check_removed_keys(config)
    config["analysis"]["survival_all_seeds"] = False
    with pytest.raises(
        UserInputError,
        match=r"^analysis\.survival_all_seeds was removed because decoder survival now always "
        r"reports every dense x pruned seed pair",
    ):
        check_removed_keys(config)


def test_each_dictionary_gets_its_own_rows_under_its_label():
    """A pretrained SAE's features sit beside the trained SAE's, each summarised alone."""
    rng = np.random.default_rng(3)
    trained = _per_feature(rng.uniform(0, 1, 40), np.linspace(0.01, 1.0, 40))
    pretrained = _per_feature(rng.uniform(0, 1, 60), np.linspace(0.02, 0.9, 60))
    both = {
        ("tiny", 2, "wanda-0.4", "trained here"): trained,
        ("tiny", 2, "wanda-0.4", "gemma-scope/layer_2"): pretrained,
    }
    survival, table3, quintiles = activation_survival_tables(both, [0.5], 0.5, n_boot=20, seed=0)
    assert table3["sae"].tolist() == ["trained here", "gemma-scope/layer_2"]
    assert table3["n_alive"].tolist() == [40, 60]
    _, alone, _ = activation_survival_tables(
        {("tiny", 2, "wanda-0.4", "gemma-scope/layer_2"): pretrained}, [0.5], 0.5, n_boot=20, seed=0
    )
    pd.testing.assert_frame_equal(table3.iloc[[1]].reset_index(drop=True), alone)
    assert set(quintiles["sae"]) == set(survival["sae"]) == {"trained here", "gemma-scope/layer_2"}
