"""RQ5's robust and fragile features: the selection, the Table 4 numbers of one run, and a
whole run on a tiny saved model against the same steps taken one by one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_models import VOCAB, tiny_tokenizer
from tiny_lms import tiny_causal_lm

from prunescope.ablation import ablation_kl
from prunescope.corpus import windows_from_jsonl
from prunescope.match_files import save_matches
from prunescope.matching import match_dictionaries
from prunescope.models import load_causal_lm
from prunescope.robust_fragile import (
    TABLE4_COLUMNS,
    ablate_robust_and_fragile,
    ablation_record,
    ablation_table,
    activation_ranking,
    kl_when_fired,
    ranking_scores,
    robust_and_fragile,
    summarise_ablation,
)
from prunescope.sae import SAEConfig, TopKSAE, load_sae, save_sae

# tiny tensors: thread start-up costs more than the maths on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_robust_and_fragile_selection():
    cosine = np.array([0.9, 0.2, 0.9, 0.5, 0.99, 0.2, 0.1, 0.7])
    alive = np.array([True, True, True, True, False, True, True, True])
    picked = robust_and_fragile(cosine, alive, 2)
    assert picked["robust"].tolist() == [0, 2]
    assert picked["fragile"].tolist() == [6, 1]
    assert not picked["shrunk"] and picked["n"] == 2 and picked["n_alive"] == 7
    three = robust_and_fragile(cosine, alive, 3)
    assert three["robust"].tolist() == [0, 2, 7]
    assert three["fragile"].tolist() == [6, 1, 5]
    shrunk = robust_and_fragile(cosine, alive, 5)
    assert shrunk["shrunk"] and shrunk["n"] == 3 and shrunk["n_requested"] == 5
    assert "shrunk to 3" in shrunk["note"]
    assert not set(shrunk["robust"]) & set(shrunk["fragile"])
    with pytest.raises(ValueError, match="alive"):
        robust_and_fragile(cosine, np.eye(8, dtype=bool)[0], 1)
    with pytest.raises(ValueError, match="boolean"):
        robust_and_fragile(cosine, alive.astype(int), 1)


def test_summarise_ablation_matches_hand_computation():
    robust, fragile = np.array([0.8, 1.0, 0.921]), np.array([0.9, 0.892, 0.896])
    summary = summarise_ablation(robust, fragile)
    r, f = robust.mean(), fragile.mean()
    assert summary["robust_kl"] == pytest.approx(r)
    assert summary["delta_pct"] == pytest.approx(abs(r - f) / ((r + f) / 2) * 100)
    assert summary["robust_sem"] == pytest.approx(robust.std(ddof=1) / np.sqrt(3))
    assert summary["n_robust"] == 3 and summary["n_fragile"] == 3
    # Table 4, Gemma 2 2B dense: 0.907 vs 0.896 is reported as 1.2%.
    assert round(summarise_ablation([0.907], [0.896])["delta_pct"], 1) == 1.2
    assert np.isnan(summarise_ablation([0.907], [0.896])["robust_sem"])
    assert summarise_ablation([0.0], [0.0])["delta_pct"] == 0.0


def test_activation_ranking_scores_each_side_and_puts_undefined_last():
    import pandas as pd

    survival = pd.DataFrame(
        {
            "dense_rate": [0.1, 0.0, 0.2, 0.3, 0.05],
            "pruned_rate": [0.1, 0.0, 0.0, 0.3, 0.05],
            "correlation": [0.9, np.nan, np.nan, 0.2, 0.5],
        }
    )
    score, alive = activation_ranking(survival, "dense")
    np.testing.assert_array_equal(alive, [True, False, True, True, True])
    np.testing.assert_array_equal(score, [0.9, -1.0, -1.0, 0.2, 0.5])
    picked = robust_and_fragile(score, alive, 1)
    assert list(picked["robust"]) == [0] and list(picked["fragile"]) == [2]  # silent: fragile
    _, alive = activation_ranking(survival, "pruned")
    np.testing.assert_array_equal(alive, [True, False, False, True, True])
    with pytest.raises(ValueError, match="side must be"):
        activation_ranking(survival, "both")


def test_kl_when_fired_separates_how_often_from_how_much():
    kl = np.array([[0.0, 0.4, 0.2], [0.0, 0.0, 0.0], [0.9, 0.0, 0.3]])
    fired = np.array([[False, True, True], [False, False, False], [True, False, True]])
    got = kl_when_fired(kl, fired, "fragile")
    assert got["fragile_fired_fraction"] == pytest.approx(np.mean([2 / 3, 0, 2 / 3]))
    assert got["fragile_kl_when_fired"] == pytest.approx(np.mean([0.3, 0.6]))
    assert got["n_fragile_fired"] == 2
    never = kl_when_fired(np.zeros((2, 3)), np.zeros((2, 3), bool), "robust")
    assert np.isnan(never["robust_kl_when_fired"]) and never["n_robust_fired"] == 0
    with pytest.raises(ValueError, match="one 2-D shape"):
        kl_when_fired(kl, fired[:2], "robust")


def test_ranking_scores_read_the_file_each_selection_names(tmp_path):
    survival = pd.DataFrame(
        {
            "dense_rate": [0.1, 0.0, 0.2],
            "pruned_rate": [0.0, 0.3, 0.2],
            "correlation": [0.4, np.nan, 0.8],
        }
    )
    survival.to_csv(tmp_path / "survival.csv", index=False)
    score, alive = ranking_scores("activation", "pruned", tmp_path / "survival.csv", "unused")
    np.testing.assert_array_equal(score, [0.4, -1.0, 0.8])
    np.testing.assert_array_equal(alive, [False, True, True])

    rng = np.random.default_rng(0)
    match = match_dictionaries(
        rng.normal(size=(4, 8)), rng.normal(size=(3, 8)), [0.5], device="cpu"
    )
    save_matches(match, tmp_path / "match.h5", {})
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"firing_rate": [0.0, 0.5, 0.1]}))
    score, alive = ranking_scores("decoder", "pruned", tmp_path / "match.h5", metrics)
    np.testing.assert_array_equal(score, match.b_best_cos)
    np.testing.assert_array_equal(alive, [False, True, True])
    score, _ = ranking_scores("decoder", "dense", tmp_path / "match.h5", metrics)
    np.testing.assert_array_equal(score, match.a_best_cos)


RESULT = {
    "kl": np.array([0.3, 0.1, 0.02, 0.0]),
    "kl_per_prompt": np.array([[0.6, 0.0], [0.2, 0.0], [0.04, 0.0], [0.0, 0.0]]),
    "fired": np.array([[True, False], [True, True], [True, False], [False, False]]),
    "n_prompts": 2,
    "context": 5,
    "reconstruction_baseline_kl": None,
}
SETTINGS = {"mode": "error_preserving", "selection": "decoder"}


def test_ablation_record_splits_the_robust_from_the_fragile_features():
    chosen = {"robust": np.array([7, 2]), "fragile": np.array([4, 0]), "note": "shrunk"}
    record = ablation_record(RESULT, chosen, SETTINGS)
    assert list(record) == [
        "mode",
        "selection",
        "n_prompts",
        "context",
        "selection_note",
        "reconstruction_baseline_kl",
        "robust_kl",
        "fragile_kl",
        "delta_pct",
        "n_robust",
        "n_fragile",
        "robust_sem",
        "fragile_sem",
        "robust_fired_fraction",
        "robust_kl_when_fired",
        "n_robust_fired",
        "fragile_fired_fraction",
        "fragile_kl_when_fired",
        "n_fragile_fired",
        "robust_features",
        "fragile_features",
        "robust_kl_per_feature",
        "fragile_kl_per_feature",
    ]
    assert record["robust_kl"] == pytest.approx(0.2) and record["fragile_kl"] == pytest.approx(0.01)
    assert record["delta_pct"] == pytest.approx(0.19 / 0.105 * 100)
    assert record["robust_fired_fraction"] == pytest.approx(0.75)
    assert record["robust_kl_when_fired"] == pytest.approx((0.6 + 0.1) / 2)
    assert record["n_fragile_fired"] == 1 and record["fragile_kl_when_fired"] == 0.04
    assert record["robust_features"] == [7, 2] and record["fragile_features"] == [4, 0]
    assert record["robust_kl_per_feature"] == [0.3, 0.1]
    assert record["selection_note"] == "shrunk" and record["mode"] == "error_preserving"
    json.dumps(record)  # written as JSON: plain Python values only


def test_ablation_table_is_table4s_columns_in_order():
    chosen = {"robust": np.array([7, 2]), "fragile": np.array([4, 0])}
    runs = [
        {"model": m, "layer": 1, "condition": "wanda-0.5", "side": side}
        | ablation_record(RESULT, chosen, SETTINGS)
        for m, side in (("b", "pruned"), ("a", "dense"))
    ]
    table = ablation_table(iter(runs))
    assert table.columns.tolist() == TABLE4_COLUMNS
    assert table["model"].tolist() == ["b", "a"] and table["selection_note"].tolist() == ["", ""]
    assert TABLE4_COLUMNS[:6] == ["model", "layer", "side", "condition", "mode", "selection"]
    with pytest.raises(KeyError, match="side"):
        ablation_table([{k: v for k, v in runs[0].items() if k != "side"}])


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A tiny Llama with its tokenizer, a TopK SAE on its layer 1, prompts, and the
    activation-survival table that ranks the SAE's features, as the workflow saves them."""
    root = tmp_path_factory.mktemp("ablation")
    tiny_causal_lm("llama", VOCAB, num_hidden_layers=2).save_pretrained(root / "model")
    tiny_tokenizer().save_pretrained(root / "model")
    sae = TopKSAE(32, 24, 4, generator=torch.Generator().manual_seed(0))
    save_sae(sae, SAEConfig(expansion=1, k=4), root / "sae")
    rng = np.random.default_rng(1)
    rate = rng.uniform(0.0, 0.3, 24)
    rate[[3, 8]] = 0.0
    (root / "sae/metrics.json").write_text(json.dumps({"firing_rate": rate.tolist()}))
    ranking = pd.DataFrame({"dense_rate": rate, "correlation": rng.uniform(0, 1, 24)})
    ranking.to_csv(root / "ranking.csv", index=False)
    words = [f"w{i}" for i in range(4, VOCAB)]
    with open(root / "eval.jsonl", "w") as f:
        for i in range(12):
            f.write(json.dumps({"id": str(i), "text": " ".join(rng.choice(words, 20))}) + "\n")
    return root, ranking


def test_a_whole_run_is_the_steps_taken_one_by_one(saved_run):
    root, ranking = saved_run
    settings = {
        "n_features": 3,
        "n_prompts": 4,
        "context": 8,
        "mode": "reconstruction",
        "selection": "activation",
        "feature_batch_size": 2,
        "prompt_batch_size": 3,
    }
    files = [root / "model", root / "sae/sae.safetensors", root / "eval.jsonl"]
    files += [root / "ranking.csv", root / "sae/metrics.json"]
    record = ablate_robust_and_fragile(
        *map(str, files), layer=1, side="dense", settings=settings, dtype="float32", device="cpu"
    )
    alive = np.flatnonzero(ranking["dense_rate"] > 0)
    by_score = sorted(alive, key=lambda f: (-ranking["correlation"][f], f))
    assert record["robust_features"] == by_score[:3]
    assert (
        record["fragile_features"]
        == sorted(alive, key=lambda f: (ranking["correlation"][f], f))[:3]
    )

    model, tokenizer = load_causal_lm(str(root / "model"), "float32", "cpu")
    prompts = windows_from_jsonl(tokenizer, root / "eval.jsonl", 8, 32)[:4]
    features = record["robust_features"] + record["fragile_features"]
    direct = ablation_kl(model, load_sae(root / "sae"), 1, prompts, features, mode="reconstruction")
    assert record["robust_kl_per_feature"] == pytest.approx(direct["kl"][:3].tolist())
    assert record["fragile_kl_per_feature"] == pytest.approx(direct["kl"][3:].tolist())
    assert record["reconstruction_baseline_kl"] == pytest.approx(
        direct["reconstruction_baseline_kl"]
    )
    assert record["n_prompts"] == 4 and record["context"] == 8
    assert record["robust_kl"] == pytest.approx(np.mean(direct["kl"][:3]))
