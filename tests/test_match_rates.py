"""RQ1 and RQ2 tables from match files as the workflow saves them, against the rates of
mutual nearest neighbours computed from the full similarity matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import N_FEATURES, SEEDS, TAUS, brute_mnn, saved_study

from prunescope.analysis import feature_survival_table, seed_stability_table
from prunescope.conditions import seed_pairs
from prunescope.io import write_csv


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    dense, pruned, _, _, paths = saved_study(tmp_path_factory.mktemp("study"))
    return dense, pruned, paths


def test_seed_stability_averages_every_seed_pair_within_a_condition(study):
    dense, pruned, paths = study
    table = seed_stability_table(paths["seed_floor"] + paths["stability"])
    assert table.columns[:6].tolist() == [
        "model",
        "layer",
        "condition",
        "method",
        "sparsity",
        "tau",
    ]
    assert table["condition"].tolist() == ["dense"] * 2 + ["wanda-0.5"] * 2
    for cond, decoders in (("dense", dense), ("wanda-0.5", pruned)):
        for tau in TAUS:
            rates = [brute_mnn(decoders[a], decoders[b], tau).mean() for a, b in seed_pairs(SEEDS)]
            row = table[(table["condition"] == cond) & (table["tau"] == tau)].iloc[0]
            assert row["n_pairs"] == 3 and row["n_features"] == N_FEATURES
            assert row["mnn_mean"] == pytest.approx(np.mean(rates))
            assert row["mnn_std"] == pytest.approx(np.std(rates, ddof=1))
            assert row["method"] == cond.split("-")[0] and row["note"] == ""


def test_seed_stability_without_seed_pairs_says_what_it_needs():
    with pytest.raises(ValueError, match=r"^seed stability needs at least two SAE seeds"):
        seed_stability_table([])


def test_feature_survival_reads_the_seed_floor_from_the_stability_table(study, tmp_path):
    dense, pruned, paths = study
    write_csv(tmp_path / "stability.csv", seed_stability_table(paths["seed_floor"]))
    decoder_pairs = paths["paired_init"] + paths["cross_seed"]
    table = feature_survival_table(decoder_pairs, tmp_path / "stability.csv")
    assert table["definition"].tolist() == ["paired_init"] * 2 + ["cross_seed"] * 2
    for tau in TAUS:
        floor = np.mean([brute_mnn(dense[a], dense[b], tau).mean() for a, b in seed_pairs(SEEDS)])
        for definition, same in (("paired_init", True), ("cross_seed", False)):
            pairs = [(a, b) for a in SEEDS for b in SEEDS if (a == b) == same]
            rates = [brute_mnn(dense[a], pruned[b], tau).mean() for a, b in pairs]
            row = table[(table["tau"] == tau) & (table["definition"] == definition)].iloc[0]
            assert row["n_pairs"] == len(pairs) and row["mnn_mean"] == pytest.approx(np.mean(rates))
            assert row["seed_floor_mnn"] == pytest.approx(floor)
            assert row["ratio_to_floor"] == pytest.approx(np.mean(rates) / floor)
    # a table without its dense floor says why it has no ratio
    write_csv(tmp_path / "stability.csv", pd.read_csv(tmp_path / "stability.csv").iloc[:0])
    bare = feature_survival_table(decoder_pairs, tmp_path / "stability.csv")
    assert bare["ratio_to_floor"].isna().all()
    assert (bare["note"] == "seed floor is zero or missing: ratio undefined").all()
