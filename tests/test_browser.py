"""The feature browser: top activations against a brute-force reference, their file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunescope.browser import (
    HISTOGRAM_EDGES,
    TopActivations,
    histogram_counts,
    load_top_activations,
    save_top_activations,
)


def sparse_codes(rows: int, d_sae: int, seed: int, density: float = 0.3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(rows, d_sae, generator=generator) * 5
    return values * (torch.rand(rows, d_sae, generator=generator) < density)


def brute_force_top(codes: np.ndarray, n_top: int) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, positive values in descending order (earlier row first on ties)."""
    d_sae = codes.shape[1]
    values = np.full((d_sae, n_top), np.nan, dtype=np.float32)
    rows = np.full((d_sae, n_top), -1)
    for feature in range(d_sae):
        column = codes[:, feature]
        order = sorted(np.flatnonzero(column > 0), key=lambda r: (-column[r], r))[:n_top]
        values[feature, : len(order)] = column[order]
        rows[feature, : len(order)] = order
    return values, rows


@pytest.mark.parametrize("chunk", [1, 7, 40, 100])
def test_top_activations_equal_a_full_sort_whatever_the_chunking(chunk):
    codes = sparse_codes(100, 12, seed=chunk)
    top = TopActivations(12, n_top=5)
    for start in range(0, len(codes), chunk):
        top.add(codes[start : start + chunk], start)
    result = top.result()
    values, rows = brute_force_top(codes.numpy(), 5)
    np.testing.assert_array_equal(result.rows, rows)
    np.testing.assert_array_equal(result.values, values)
    assert result.n_rows == 100
    np.testing.assert_array_equal(result.fired, (codes > 0).sum(0).numpy())


def test_ties_keep_the_earlier_row_and_silent_features_stay_empty():
    codes = torch.zeros(6, 3)
    codes[[1, 4, 5], 0] = 2.0  # a three-way tie
    codes[3, 1] = 1.0
    top = TopActivations(3, n_top=2)
    top.add(codes[:4], 0)
    top.add(codes[4:], 4)
    result = top.result()
    assert result.rows.tolist() == [[1, 4], [3, -1], [-1, -1]]
    assert np.isnan(result.values[2]).all() and np.isnan(result.values[1, 1])


def test_histogram_counts_each_positive_value_in_its_bin():
    edges = np.array([0.1, 1.0, 10.0])
    codes = torch.tensor([[0.05, 0.0], [0.1, 3.0], [0.99, 10.0], [0.0, 50.0]])
    counts = histogram_counts(codes, edges).numpy()
    expected = np.zeros((2, 4), dtype=int)
    for feature in range(2):
        for value in codes[:, feature].numpy():
            if value > 0:
                expected[feature, np.searchsorted(edges, value, side="right")] += 1
    np.testing.assert_array_equal(counts, expected)
    assert counts.tolist() == [[1, 2, 0, 0], [0, 0, 1, 2]]


def test_rows_must_come_in_order():
    top = TopActivations(4, n_top=2)
    top.add(torch.ones(3, 4), 0)
    with pytest.raises(ValueError, match="expected row 3, got 5"):
        top.add(torch.ones(3, 4), 5)
    with pytest.raises(ValueError, match=r"shape \(rows, 4\)"):
        top.add(torch.ones(3, 5), 3)


def test_the_file_round_trips(tmp_path):
    top = TopActivations(8, n_top=3)
    top.add(sparse_codes(20, 8, seed=1), 0)
    path = tmp_path / "top.h5"
    save_top_activations(path, {"dense": top.result()}, {"sae": "x"})
    sides, _, attrs = load_top_activations(path)
    assert attrs["sae"] == "x"
    np.testing.assert_array_equal(sides["dense"].rows, top.result().rows)
    np.testing.assert_array_equal(sides["dense"].counts, top.result().counts)
    np.testing.assert_array_equal(sides["dense"].edges, HISTOGRAM_EDGES)


def test_context_rows_stop_at_the_window_edges():
    from prunescope.browser.contexts import context_rows

    rows_per_window = 5  # rows 0-4 are window 0, 5-9 window 1
    got = context_rows(np.array([[6, 0], [-1, 9]]), rows_per_window, before=2, after=1)
    assert got.tolist() == [
        [[-1, 5, 6, 7], [-1, -1, 0, 1]],
        [[-1, -1, -1, -1], [7, 8, 9, -1]],
    ]


def test_feature_contexts_equal_the_latents_of_a_full_encoding():
    from prunescope.browser.contexts import feature_contexts
    from prunescope.sae import TopKSAE
    from prunescope.survival import as_latent_encoder

    generator = torch.Generator().manual_seed(0)
    sae = TopKSAE(6, 16, 3, generator=generator)
    dense = torch.randn(40, 6, generator=generator)
    pruned = dense + 0.3 * torch.randn(40, 6, generator=generator)
    encoder = as_latent_encoder(sae)
    codes = {"dense": encoder.encode(dense), "pruned": encoder.encode(pruned)}
    top = TopActivations(16, n_top=4)
    top.add(codes["dense"], 0)
    got = feature_contexts(
        dense, pruned, sae, top.result(), n_contexts=2, before=2, after=1, rows_per_window=8
    )
    assert got["rows"].shape == (16, 2, 4)
    for feature, context, slot in np.ndindex(*got["rows"].shape):
        row = got["rows"][feature, context, slot]
        top_row = top.result().rows[feature, context]
        if (
            top_row < 0
            or not (0 <= top_row + slot - 2 < 40)
            or (top_row + slot - 2) // 8 != top_row // 8
        ):
            assert row == -1 and np.isnan(got["dense"][feature, context, slot])
            continue
        assert row == top_row + slot - 2
        for side in ("dense", "pruned"):
            expected = codes[side][row, feature].item()
            assert got[side][feature, context, slot] == pytest.approx(expected, abs=1e-6)


def test_contexts_round_trip_through_the_file(tmp_path):
    top = TopActivations(4, n_top=2)
    top.add(sparse_codes(10, 4, seed=2), 0)
    contexts = {"rows": np.arange(24, dtype=np.int32).reshape(4, 2, 3)}
    save_top_activations(tmp_path / "t.h5", {"dense": top.result()}, {}, contexts)
    _, loaded, _ = load_top_activations(tmp_path / "t.h5")
    np.testing.assert_array_equal(loaded["rows"], contexts["rows"])


# --- the pages ---


def survival_table(n: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    rate = rng.uniform(0, 0.1, n)
    rate[:3] = 0.0  # dead features are never drawn
    correlation = rng.uniform(0, 1, n)
    correlation[3] = np.nan  # silent on the pruned side: destroyed
    return pd.DataFrame(
        {
            "feature": np.arange(n),
            "dense_rate": rate,
            "pruned_rate": rate * 0.9,
            "correlation": correlation,
            "control_correlation": correlation,
        }
    )


def test_the_sample_draws_from_each_quintile_and_status_reproducibly():
    from prunescope.browser.jobs import sample_features
    from prunescope.stats import firing_rate_quintiles

    table = survival_table(60)
    picked = sample_features(table, tau=0.5, per_quintile=2, seed=3)
    assert picked.equals(sample_features(table, tau=0.5, per_quintile=2, seed=3))
    assert not picked.equals(sample_features(table, tau=0.5, per_quintile=2, seed=4))
    quintile = firing_rate_quintiles(table["dense_rate"].to_numpy())
    for row in picked.itertuples():
        assert quintile[row.feature] == row.quintile
        survived = table.loc[row.feature, "correlation"] >= 0.5
        assert row.status == ("survived" if survived else "destroyed")
    counts = picked.groupby(["quintile", "status"]).size()
    assert (counts <= 2).all() and set(picked["feature"]).isdisjoint({0, 1, 2})
    assert 3 not in set(picked.loc[picked["status"] == "survived", "feature"])


def test_a_group_smaller_than_asked_for_is_shown_whole():
    from prunescope.browser.jobs import sample_features

    table = survival_table(10)
    table["correlation"] = 0.9  # nothing is destroyed
    picked = sample_features(table, tau=0.5, per_quintile=5, seed=0)
    assert set(picked["status"]) == {"survived"} and len(picked) == 7  # every alive feature


def test_tokens_are_shaded_by_activation_over_the_scale_and_escaped():
    from prunescope.browser.pages import shaded_tokens

    html = shaded_tokens(["<a>", "b\n", "c", "d"], [2.0, 0.5, None, 0.0], scale=2.0, peak=0)
    assert html.count('class="tok') == 3  # the token outside the context is left out
    assert "&lt;a&gt;" in html and "<a>" not in html
    assert "rgba(214,96,33,1.00)" in html and "rgba(214,96,33,0.25)" in html
    assert html.endswith('<span class="tok">d</span>')  # silent: not shaded
    assert 'class="tok peak"' in html and "b⏎" in html


def test_a_card_shows_its_numbers_and_both_sides_of_each_context():
    from prunescope.browser.pages import card_html, feature_page

    card = {
        "condition": "wanda-0.5",
        "feature": 17,
        "quintile": 2,
        "status": "destroyed",
        "dense_rate": 0.01,
        "pruned_rate": 0.002,
        "correlation": 0.31,
        "control_correlation": 0.92,
        "paired_cos": 0.8,
        "cross_cos": float("nan"),
        "scale": 4.0,
        "hist_dense": [0, 3, 1],
        "hist_pruned": [2, 0, 0],
        "contexts": [{"tokens": ["x", "y"], "dense": [4.0, 1.0], "pruned": [1.0, 0.0], "peak": 0}],
    }
    html = card_html(card)
    assert "ablation KL" not in html and "ablation KL 0.03" in card_html(
        {**card, "ablation_kl": 0.03}
    )
    assert 'data-feature="17"' in html and "destroyed" in html
    assert "0.01 → 0.002" in html and "cross-seed n/a" in html
    assert html.count('class="context"') == 1 and html.count('class="side"') == 2
    section = {"condition": "wanda-0.5", "summary": "s", "groups": [("quintile 2", [card])]}
    page = feature_page("t", "intro", [section])
    assert page.startswith("<!DOCTYPE html>") and 'id="feature-search"' in page
    assert "http" not in page  # nothing fetched: the page works offline


def test_rebuilt_tokens_that_differ_from_the_cache_are_refused():
    from prunescope.activations import tokens_digest
    from prunescope.browser.jobs import check_tokens
    from prunescope.errors import UserInputError

    windows = torch.arange(12).reshape(3, 4)
    check_tokens(windows, 1, tokens_digest(windows, 1), "eval.jsonl")
    with pytest.raises(UserInputError, match="eval tokens rebuilt from eval.jsonl"):
        check_tokens(windows + 1, 1, tokens_digest(windows, 1), "eval.jsonl")


# --- the findings page ---


def run_tables():
    """Tables of a run with two pruned conditions of one model and layer."""
    import pandas as pd

    conds = ["magnitude-0.5", "wanda-0.5"]
    perplexity = pd.DataFrame(
        {"model": "m", "condition": ["dense", *conds], "perplexity": [10.0, 30.0, 12.0]}
    )
    decoder = pd.DataFrame(
        [
            {
                "model": "m",
                "layer": 3,
                "condition": c,
                "definition": d,
                "tau": tau,
                "mnn_mean": value,
                "seed_floor_mnn": 0.2,
            }
            for c, paired, cross in ((conds[0], 0.9, 0.3), (conds[1], 0.8, 0.5))
            for d, value in (("paired_init", paired), ("cross_seed", cross))
            for tau in (0.5, 0.7)
        ]
    )
    activation = pd.DataFrame(
        [
            {
                "model": "m",
                "layer": 3,
                "sae": "trained here",
                "condition": c,
                "definition": d,
                "tau": 0.7,
                "survival": value,
            }
            for c, act, noise in ((conds[0], 0.4, 0.6), (conds[1], 0.9, 0.7))
            for d, value in (("activation", act), ("matched_noise", noise))
        ]
    )
    transfer = pd.DataFrame(
        {
            "model": "m",
            "layer": 3,
            "sae": "trained here",
            "sae_kind": "trained",
            "condition": ["dense", *conds],
            "fvu": [0.1, 0.4, 0.2],
            "fvu_over_dense": [1.0, 4.0, 2.0],
        }
    )
    ablation = pd.DataFrame(
        {
            "model": ["m"],
            "layer": [3],
            "side": ["dense"],
            "condition": ["wanda-0.5"],
            "robust_kl": [0.02],
            "fragile_kl": [0.005],
            "robust_kl_when_fired": [0.04],
            "fragile_kl_when_fired": [0.03],
        }
    )
    return perplexity, decoder, activation, transfer, ablation


def test_the_findings_table_puts_every_measure_beside_its_control():
    from prunescope.browser.findings import findings_table

    table = findings_table(
        *run_tables(), tau=0.7, correlation_tau=0.7, reference_sae="trained here"
    ).set_index("condition")
    assert table.loc["magnitude-0.5", "perplexity_ratio"] == pytest.approx(3.0)
    assert table.loc["wanda-0.5", ["paired_init", "cross_seed", "seed_floor"]].tolist() == [
        0.8,
        0.5,
        0.2,
    ]
    assert table.loc["magnitude-0.5", ["activation", "matched_noise"]].tolist() == [0.4, 0.6]
    assert table.loc["wanda-0.5", ["fvu", "fvu_over_dense"]].tolist() == [0.2, 2.0]
    assert table.loc["wanda-0.5", "robust_kl"] == pytest.approx(0.02)
    assert np.isnan(table.loc["magnitude-0.5", "robust_kl"])


def test_the_findings_say_what_the_numbers_show_and_nothing_else():
    from prunescope.browser.findings import findings_html, findings_sentences, findings_table

    table = findings_table(
        *run_tables(), tau=0.7, correlation_tau=0.7, reference_sae="trained here"
    )
    said = findings_sentences(table, tau=0.7, correlation_tau=0.7)
    text = " ".join(said)
    assert "lowest under wanda-0.5 (1.200×) and highest under magnitude-0.5 (3.000×)" in text
    assert "paired-init exceeds cross-seed in 2 of 2 conditions (median +45 points): that" in text
    assert "fewer features than that noise under magnitude-0.5." in text
    assert "each robust feature ablated alone shifts the next-token distribution by a " in text
    assert "mean KL of 0.02, each fragile one by 0.005; on the prompts where the feature " in text
    assert "rank correlation" not in text  # two conditions are too few to rank
    page = findings_html(table, {("m", 3): said})
    assert page.count("<tr>") == 3 and "under matched noise" in page


def test_missing_measures_leave_their_sentences_out():
    from prunescope.browser.findings import findings_sentences, findings_table

    perplexity, decoder, activation, transfer, ablation = run_tables()
    table = findings_table(
        perplexity,
        decoder,
        activation.iloc[0:0],
        transfer,
        ablation.iloc[0:0],
        tau=0.7,
        correlation_tau=0.7,
        reference_sae="trained here",
    )
    text = " ".join(findings_sentences(table, tau=0.7, correlation_tau=0.7))
    assert "Activation survival" not in text and "ablating" not in text
    assert "Decoder survival" in text


def test_the_reverse_pass_keeps_its_own_top_activations_once_whatever_the_blocks():
    from prunescope.sae import TopKSAE
    from prunescope.survival import as_latent_encoder, best_dense_partners

    generator = torch.Generator().manual_seed(1)
    own_sae = TopKSAE(6, 16, 3, generator=generator)
    dense_sae = TopKSAE(6, 12, 3, generator=generator)
    rows = torch.randn(50, 6, generator=generator)
    expected = TopActivations(16, n_top=4)
    expected.add(as_latent_encoder(own_sae).encode(rows), 0)
    for max_bytes in (10**9, 8 * 16 * 4):  # one block of dense features, then three
        top = TopActivations(16, n_top=4)
        best_dense_partners(
            rows,
            rows + 0.1,
            own_sae,
            dense_sae,
            (0.5,),
            batch_rows=7,
            max_bytes=max_bytes,
            top=top,
        )
        assert top.n_rows == 50
        np.testing.assert_array_equal(top.result().rows, expected.result().rows)


def test_own_contexts_are_the_features_own_latents_around_their_top_rows():
    from prunescope.browser.contexts import own_contexts
    from prunescope.sae import TopKSAE
    from prunescope.survival import as_latent_encoder

    generator = torch.Generator().manual_seed(2)
    sae = TopKSAE(6, 8, 2, generator=generator)
    rows = torch.randn(30, 6, generator=generator)
    codes = as_latent_encoder(sae).encode(rows)
    top = TopActivations(8, n_top=3)
    top.add(codes, 0)
    got = own_contexts(rows, sae, top.result(), n_contexts=2, before=1, after=1, rows_per_window=10)
    for feature, context, slot in zip(*np.nonzero(got["rows"] >= 0), strict=True):
        row = got["rows"][feature, context, slot]
        assert got["own"][feature, context, slot] == pytest.approx(codes[row, feature].item())
    peaks = got["rows"][:, :, 1]
    assert (peaks == top.result().rows[:, :2]).all()


def test_a_card_shows_its_cross_seed_partner_and_the_partner_s_own_contexts():
    from prunescope.browser.pages import card_html

    partner = {
        "feature": 5,
        "scale": 2.0,
        "contexts": [{"tokens": ["p", "q"], "pruned": [2.0, 0.5], "peak": 0}],
    }
    card = {
        "condition": "c",
        "feature": 1,
        "quintile": 1,
        "status": "survived",
        "dense_rate": 0.1,
        "pruned_rate": 0.1,
        "correlation": 0.9,
        "control_correlation": 0.9,
        "cross_cos": 0.42,
        "scale": 1.0,
        "hist_dense": [1],
        "hist_pruned": [1],
        "contexts": [],
        "partner": partner,
    }
    html = card_html(card)
    assert "feature 5 (decoder cosine 0.42)" in html
    assert html.count('class="context"') == 1 and html.count('class="side"') == 1


def test_align_findings_rank_the_methods_at_the_highest_sparsity():
    import pandas as pd

    from prunescope.browser.findings import align_findings, findings_html

    rows = [
        ("dnf16", "unstructured", method, sparsity, stage, acc, c1)
        for method, acc, c1 in (("mp", 0.70, 0.5), ("mip", 0.75, 0.3), ("obs", 0.72, 0.2))
        for sparsity in (0.5, 0.75)
        for stage in ("pruned", "finetuned")
    ]
    columns = ["task", "structure", "method", "sparsity", "stage"]
    summary = pd.DataFrame(rows, columns=[*columns, "test_accuracy_mean", "c1_divergence_mean"])
    summary["test_accuracy_se"], summary["c1_divergence_se"] = 0.01, 0.02
    table, said = align_findings(summary)
    assert table["method"].tolist() == ["mip", "obs", "mp"] and set(table["sparsity"]) == {0.75}
    assert said == [
        "dnf16, unstructured, sparsity 0.75: mip keeps the most test accuracy (0.750 ± 0.010 "
        "standard error over trials), magnitude pruning 0.700; obs keeps C1 closest to the "
        "dense net's (divergence 0.2)."
    ]
    page = findings_html(pd.DataFrame(columns=["model", "layer"]), {}, (table, said), {"p": b"x"})
    assert "Study ALIGN" in page and 'src="data:image/png;base64,eA=="' in page


def test_the_rank_sentence_puts_the_noise_control_beside_survival():
    import pandas as pd
    from scipy import stats

    from prunescope.browser.findings import findings_sentences

    table = pd.DataFrame(
        {
            "condition": ["a", "b", "c", "d"],
            "perplexity_ratio": [1.1, 1.5, 2.0, 3.0],
            "activation": [0.9, 0.7, 0.8, 0.2],
            "matched_noise": [0.8, 0.85, 0.6, 0.5],
        }
    )
    for column in ("paired_init", "cross_seed", "seed_floor", "robust_kl", "fragile_kl"):
        table[column] = np.nan
    text = " ".join(findings_sentences(table, tau=0.7, correlation_tau=0.7))
    rho = stats.spearmanr(table["perplexity_ratio"], table["activation"]).statistic
    control = stats.spearmanr(table["perplexity_ratio"], table["matched_noise"]).statistic
    assert f"with activation survival is {rho:+.2f}, with survival under matched noise " in text
    assert f"{control:+.2f}." in text and "Decoder survival" not in text
