"""Table B.1 from the SAEs' cfg.json and metrics.json files, averaged over seeds by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prunescope.analysis import sae_quality_records, sae_quality_table


def test_sae_quality_reads_each_sae_and_averages_over_seeds(tmp_path):
    runs = [("wanda-0.5", 0, 0.30, 7.0), ("dense", 0, 0.10, 8.0), ("dense", 1, 0.20, 6.0)]
    metrics, cfgs = [], []
    for cond, seed, fvu, l0 in runs:
        folder = tmp_path / f"{cond}/seed{seed}"
        folder.mkdir(parents=True)
        provenance = {"model": "m", "layer": "2", "condition": cond}
        cfg = {"seed": seed, "k": 4, "provenance": provenance}
        (folder / "cfg.json").write_text(json.dumps(cfg))
        values = {"fvu": fvu, "l0": l0, "alive": 60 + seed, "d_sae": 64, "firing_rate": [0.1]}
        (folder / "metrics.json").write_text(json.dumps(values))
        metrics.append(folder / "metrics.json")
        cfgs.append(folder / "cfg.json")
    records = sae_quality_records(metrics, cfgs)
    assert records[0] == {
        "model": "m",
        "layer": 2,
        "condition": "wanda-0.5",
        "method": "wanda",
        "sparsity": 0.5,
        "seed": 0,
        "fvu": 0.30,
        "l0": 7.0,
        "alive": 60,
        "d_sae": 64,
    }
    table = sae_quality_table(records)
    assert table["condition"].tolist() == ["dense", "wanda-0.5"]
    dense = table.iloc[0]
    assert dense["fvu"] == pytest.approx(0.15) and dense["fvu_std"] == pytest.approx(
        np.std([0.1, 0.2], ddof=1)
    )
    assert dense["l0"] == 7.0 and dense["alive"] == 60.5 and dense["n"] == 2
    assert np.isnan(table.iloc[1]["fvu_std"]) and table.iloc[1]["n"] == 1
    with pytest.raises(ValueError):
        sae_quality_records(metrics, cfgs[:2])  # the two lists run in step
