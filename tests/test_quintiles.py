"""Table 3 and the per-quintile table from match and metrics files as the workflow saves
them: the tables of the same matches in memory (checked by hand in test_analysis), from
the right firing rates, with every note logged."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from test_analysis import SEEDS, TAUS, brute_mnn, brute_quintiles, saved_study

from prunescope.analysis import decoder_quintile_tables, quintile_survival_tables


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return saved_study(tmp_path_factory.mktemp("study"))


def test_quintile_tables_from_files_are_those_of_the_matches_in_memory(study, caplog):
    dense, pruned, firing, matches, paths = study
    files = paths["paired_init"] + paths["cross_seed"] + paths["seed_floor"]
    with caplog.at_level(logging.INFO, logger="prunescope"):
        table3, long = quintile_survival_tables(
            paths["dense_metrics"], files, TAUS, 0.6, n_boot=20, seed=0
        )
    expected3, expected_long = decoder_quintile_tables(
        matches, firing, TAUS, 0.6, n_boot=20, seed=0
    )
    pd.testing.assert_frame_equal(table3, expected3)
    pd.testing.assert_frame_equal(long, expected_long)
    # quintiles by the dense seed's own firing rates, read back from its metrics.json
    per_pair = [
        brute_quintiles(firing[("m", 1, s)], brute_mnn(dense[s], pruned[s], 0.6)) for s in SEEDS
    ]
    paired = table3.set_index("definition").loc["paired_init"]
    np.testing.assert_allclose([paired[f"Q{q}"] for q in range(1, 6)], np.mean(per_pair, axis=0))
    logged = [r.getMessage() for r in caplog.records]
    assert logged[0].startswith("Table 3 (tau 0.60):\n") and "paired_init" in logged[0]
    noted = table3[table3["note"] != ""]
    assert len(noted) == 1  # paired_init: the per-pair rank correlation is undefined in two
    assert logged[1:] == [f"m {r.condition} {r.definition}: {r.note}" for r in noted.itertuples()]
