"""Study ALIGN's stages strung together on a tiny DNF task, and the tables built from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prunescope.align.data import sample_dnf_dataset
from prunescope.align.experiment import (
    code_maps,
    finetune_variants,
    load_mip_solution,
    load_variant_nets,
    magnitude_sweep,
    mip_frame,
    net_metrics,
    prune_variants,
    save_mip_solution,
    save_variant_nets,
    train_dense_net,
)
from prunescope.align.hessian import w1_hessian
from prunescope.align.mip import MipSettings, feature_refit, solutions_frame, solve_layer
from prunescope.align.net import AlignNets
from prunescope.align.prune import damped_inverse
from prunescope.align.results import (
    accuracy_table,
    mip_seconds,
    mip_summary,
    standard_error,
    summarise,
)
from prunescope.align.structures import keep_count

METHODS = ["mp", "obd", "obs", "mip", "flo", "obs_mask", "mip_mask"]


@pytest.fixture(scope="module")
def trained():
    data = sample_dnf_dataset(12, 2000, 400, seed=0)
    nets, history = train_dense_net(data, epochs=3, lr=3e-3, batch_size=128, seed=0)
    return data, nets.variant(0), history


def _mip(dense, sparsity, block=None):
    keep = keep_count(dense["W1"].shape[1], sparsity)
    settings = MipSettings(threads=1)
    mask, weights, solutions = solve_layer(
        dense["W1"], dense["C0"], keep, block, settings=settings, progress=False
    )
    return {"mask": mask, "weights": weights}, solutions


def test_training_history_has_every_epoch_and_codes(trained):
    _, _, history = trained
    assert list(history["epoch"]) == [0, 1, 2, 3]
    assert {"test_accuracy", "train_loss", "4P-positive", "clauses_covered"} <= set(history)
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


@pytest.mark.parametrize("structure", ["unstructured", "2of4"])
def test_every_variant_keeps_its_count_per_row(trained, structure):
    data, dense, _ = trained
    sparsities = [0.5, 0.75]
    mip = {s: _mip(dense, s, (2, 4) if structure == "2of4" else None)[0] for s in sparsities}
    variant_list = [(m, s) for s in sparsities for m in METHODS]
    hessian = w1_hessian(**dense, x=data.x_train[:500])
    nets, masks = prune_variants(
        dense,
        variant_list,
        structure=structure,
        hessian=hessian,
        hessian_inverse=damped_inverse(hessian, 0.01),
        mip_solutions=mip,
    )
    arrays = nets.to_arrays()
    for v, (method, sparsity) in enumerate(variant_list):
        keep = keep_count(12, sparsity)
        assert (masks[v].sum(axis=1) == keep).all(), method
        assert np.all(arrays["W1"][v][~masks[v]] == 0), method
        if structure == "2of4":
            assert (masks[v].reshape(12, 3, 4).sum(axis=2) <= 2).all(), method
        if method in ("mp", "obd", "obs_mask", "mip_mask"):  # mask only: dense values kept
            np.testing.assert_allclose(arrays["W1"][v][masks[v]], dense["W1"][masks[v]], rtol=1e-6)
        np.testing.assert_allclose(arrays["C0"][v], dense["C0"], rtol=1e-6)
    metrics = net_metrics(nets, data, dense)
    c1 = metrics["c1_divergence"].to_numpy()
    by = {vl: i for i, vl in enumerate(variant_list)}
    for s in sparsities:
        # The oracle minimises exactly the C1 distance over masks with refitted weights.
        assert c1[by[("mip", s)]] <= min(c1[by[(m, s)]] for m in ("mp", "obd", "obs")) + 1e-6


def test_mip_is_never_worse_than_refitted_heuristic_masks(trained):
    _, dense, _ = trained
    mip, _ = _mip(dense, 0.5)
    c1 = dense["W1"] @ dense["C0"]
    oracle = np.linalg.norm(mip["weights"] @ dense["C0"] - c1, axis=1)
    magnitude = np.abs(dense["W1"]) >= np.sort(np.abs(dense["W1"]), axis=1)[:, [6]]
    refit = feature_refit(dense["W1"], dense["C0"], magnitude)
    assert np.all(oracle <= np.linalg.norm(refit @ dense["C0"] - c1, axis=1) + 1e-9)


def test_finetuning_keeps_masks_and_files_round_trip(trained, tmp_path):
    data, dense, _ = trained
    variant_list = [("mp", 0.5), ("mp", 0.75)]
    nets, masks = prune_variants(
        dense,
        variant_list,
        structure="unstructured",
        hessian=None,
        hessian_inverse=None,
        mip_solutions={},
    )
    save_variant_nets(tmp_path / "pruned.safetensors", nets, masks)
    loaded, loaded_masks = load_variant_nets(tmp_path / "pruned.safetensors")
    assert (loaded_masks == masks).all()
    before = code_maps(loaded, data.clauses)
    tuned = finetune_variants(loaded, masks, data, epochs=1, lr=1e-3, batch_size=128, seed=0)
    assert np.all(tuned.to_arrays()["W1"][~masks] == 0)
    assert code_maps(tuned, data.clauses).shape == before.shape


def test_magnitude_sweep_at_zero_is_the_dense_net(trained):
    data, dense, _ = trained
    sweep = magnitude_sweep(dense, data, [0.0, 0.5])
    assert sweep.loc[0, "w1_divergence"] == pytest.approx(0.0, abs=1e-6)
    dense_row = net_metrics(AlignNets.from_arrays(dense), data).iloc[0]
    assert sweep.loc[0, "test_accuracy"] == dense_row["test_accuracy"]
    assert sweep.loc[1, "w1_divergence"] > 0


def test_mip_solution_file_keeps_labels_and_neuron_records(trained, tmp_path):
    _, dense, _ = trained
    mip, solutions = _mip(dense, 0.75)
    path = tmp_path / "s0.75.npz"
    save_mip_solution(
        path,
        mip["mask"],
        mip["weights"],
        solutions_frame(solutions),
        task="dnf12",
        structure="unstructured",
        trial=0,
        sparsity=0.75,
    )
    frame = mip_frame(load_mip_solution(path))
    assert len(frame) == 12 and set(frame["task"]) == {"dnf12"}
    summary = mip_summary(frame)
    assert summary.loc[0, "neurons"] == 12
    assert summary.loc[0, "proven_optimal"] == frame["status"].isin(["optimal", "enumerated"]).sum()


def test_mip_table_keeps_times_apart_and_both_match_a_hand_count():
    neurons = pd.DataFrame(
        {
            "task": "digits",
            "structure": ["unstructured"] * 3 + ["2of4"],
            "sparsity": 0.5,
            "status": ["optimal", "timelimit", "enumerated", "timelimit"],
            "solver": ["branch-and-bound", "branch-and-bound", "enumeration", "scip"],
            "gap": [0.0, 0.3, 0.0, 0.5],
            "seconds": [0.1, 0.7, 0.2, 1.5],
            "nodes": [4, 32, 0, 9],
        }
    )
    summary = mip_summary(neurons).set_index("structure")
    # only what the same config reproduces on any machine: no wall-clock column
    assert not any("seconds" in column for column in summary.columns)
    row = summary.loc["unstructured"]
    assert (row["neurons"], row["proven_optimal"], row["enumerated"]) == (3, 2, 1)
    assert row["mean_gap"] == pytest.approx(0.1) and row["max_gap"] == 0.3
    assert row["median_nodes"] == 4
    seconds = mip_seconds(neurons).set_index("structure")
    assert list(seconds.columns) == [
        "task",
        "sparsity",
        "neurons",
        "median_seconds",
        "max_seconds",
        "total_seconds",
    ]
    row = seconds.loc["unstructured"]
    assert (row["median_seconds"], row["max_seconds"]) == (0.2, 0.7)
    assert row["total_seconds"] == pytest.approx(1.0)
    assert seconds.loc["2of4", "total_seconds"] == 1.5


def test_standard_error_and_summary_match_a_hand_computation():
    values = pd.Series([1.0, 2.0, 4.0])
    assert standard_error(values) == pytest.approx(np.std([1, 2, 4], ddof=1) / np.sqrt(3))
    assert standard_error(pd.Series([3.0])) == 0.0
    frame = pd.DataFrame({"g": ["a", "a", "a", "b"], "x": [1.0, 2.0, 4.0, 5.0]})
    summary = summarise(frame, ["g"], ["x"]).set_index("g")
    assert summary.loc["a", "x_mean"] == pytest.approx(7 / 3)
    assert summary.loc["b", "trials"] == 1


def test_accuracy_table_labels_stages():
    row = {
        "variant": 0,
        "task": "t",
        "structure": "unstructured",
        "method": "mp",
        "sparsity": 0.5,
        "trial": 0,
        "test_accuracy": 0.9,
    }
    table = accuracy_table([pd.DataFrame([row])], [pd.DataFrame([{**row, "test_accuracy": 0.95}])])
    assert list(table["stage"]) == ["finetuned", "pruned"]
    assert "variant" not in table
