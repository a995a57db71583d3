"""The logistic fit from files as the workflow saves them: the fits of the same matches and
tables in memory (checked against direct fits in test_analysis), each fit's quality logged."""

from __future__ import annotations

import logging

import pandas as pd
from test_analysis import logistic_study, save_study, study_decoders

from prunescope.analysis import logistic_fit_table, logistic_fits, read_keyed_tables
from prunescope.io import write_csv


def test_the_fit_table_from_files_is_the_fit_of_what_they_hold(tmp_path, caplog):
    dense, pruned, firing = study_decoders()
    _, matches, activation = logistic_study(dense, pruned, firing)
    reference = {("m", 1, 0): firing[("m", 1, 0)]}
    paths = save_study(tmp_path, matches, reference)
    keys, files = [], []
    for (model, layer, cond), table in activation.items():
        write_csv(tmp_path / f"{cond}.csv", table)
        keys.append([model, str(layer), cond])  # as a rule's params list them
        files.append(tmp_path / f"{cond}.csv")
    tables = read_keyed_tables(keys, files)
    assert list(tables) == list(activation)  # the layer an int, in the rule's order
    with caplog.at_level(logging.INFO, logger="prunescope"):
        table, summaries = logistic_fit_table(
            paths["dense_metrics"],
            paths["paired_init"] + paths["cross_seed"],
            tables,
            [0.6],
            [0.5],
            0,
        )
    expected, expected_summaries = logistic_fits(
        {("m", 1): firing[("m", 1, 0)]}, matches, activation, [0.6], [0.5], reference_seed=0
    )
    pd.testing.assert_frame_equal(table, expected)
    assert summaries == "\n".join(expected_summaries)
    fits = expected.drop_duplicates(["definition", "tau"])
    assert [r.getMessage() for r in caplog.records] == [
        f"m L1 wanda {r.definition} tau={r.tau:g}: AUC {r.auc:.3f} accuracy {r.accuracy:.3f} "
        f"{r.note}"
        for r in fits.itertuples()
    ]
