"""Feature bases estimated without C0 (SAE, ICA), the MIP and FLO that prune against them, and
the table that sets them beside the oracle."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from prunescope.align.basis import (
    column_cosines,
    embedded_inputs,
    estimate_basis,
    ica_basis,
    recovery,
    sae_basis,
    solvable_basis,
    whitening,
)
from prunescope.align.experiment import load_mip_solution, prune_variants, save_basis
from prunescope.align.jobs import solve_align_basis_mip, solve_align_mip
from prunescope.align.methods import BASIS_METHODS, estimators_of, split_method
from prunescope.align.mip import MipSettings, solve_layer
from prunescope.align.net import AlignNets, save_nets
from prunescope.align.results import basis_comparison

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAE = {"l1": 0.03, "steps": 1000, "lr": 0.01, "batch_size": 512}
ICA = {"max_iter": 1000, "tol": 1e-4}


def planted(features: int = 8, seed: int = 0, samples: int = 4000):
    """A random basis C and sparse non-negative features x (DNF-like: 0 or 1.5) it embeds."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(features, features))
    x = (rng.random((samples, features)) < 0.3) * 1.5
    return basis, x, embedded_inputs(x, basis)


# --------------------------------------------------------------------------- names


def test_method_names_split_into_the_oracle_method_and_the_estimator():
    assert BASIS_METHODS == ("mip_sae", "flo_sae", "mip_ica", "flo_ica")
    assert split_method("flo_ica") == ("flo", "ica")
    assert split_method("mip_mask") == ("mip_mask", None)
    assert estimators_of(["mp", "flo_ica", "mip_sae", "mip_ica"]) == ["sae", "ica"]
    assert estimators_of(["mp", "mip"]) == []


# --------------------------------------------------------------------------- recovery


def test_recovery_matches_a_brute_force_loop():
    rng = np.random.default_rng(3)
    true, estimated = rng.normal(size=(5, 4)), rng.normal(size=(5, 6))
    estimated[:, 2] = 0.0  # a dead atom is orthogonal to everything
    best = []
    for i in range(true.shape[1]):
        cosines = [0.0]
        for j in range(estimated.shape[1]):
            a, b = true[:, i], estimated[:, j]
            norm = math.sqrt(sum(v * v for v in a)) * math.sqrt(sum(v * v for v in b))
            if norm:
                cosines.append(abs(sum(p * q for p, q in zip(a, b, strict=True))) / norm)
        best.append(max(cosines))
    score = recovery(true, estimated)
    np.testing.assert_allclose(score["best_cosine"], best, atol=1e-6)
    assert score["mean_best_cosine"] == pytest.approx(np.mean(best))
    assert score["min_best_cosine"] == pytest.approx(min(best))
    assert score["features"] == 4


def test_recovery_ignores_sign_order_and_scale():
    true = np.random.default_rng(0).normal(size=(6, 6))
    shuffled = -3.0 * true[:, [5, 0, 4, 1, 3, 2]]
    assert recovery(true, shuffled)["min_best_cosine"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="do not compare"):
        column_cosines(true, shuffled[:4])


# --------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("seed", [0, 1])
def test_sae_recovers_a_planted_basis(seed):
    basis, _, inputs = planted(seed=seed)
    estimated = sae_basis(inputs, 8, **SAE, seed=seed)
    assert estimated.shape == (8, 8)
    assert recovery(basis, estimated)["min_best_cosine"] > 0.98


@pytest.mark.parametrize("seed", [0, 1])
def test_ica_recovers_a_planted_basis(seed):
    basis, _, inputs = planted(seed=seed)
    estimated = ica_basis(inputs, 8, **ICA, seed=seed)
    assert recovery(basis, estimated)["min_best_cosine"] > 0.98


@pytest.mark.parametrize(("estimator", "settings"), [("sae", SAE), ("ica", ICA)])
def test_columns_are_scaled_like_the_features_they_stand_for(estimator, settings):
    basis, _, inputs = planted(seed=0)
    estimated = estimate_basis(estimator, inputs, 8, settings, seed=0)
    match = column_cosines(basis, estimated).argmax(axis=1)
    # every feature has the same scale, so each column is its C0 column times one factor
    ratios = np.linalg.norm(estimated[:, match], axis=0) / np.linalg.norm(basis, axis=0)
    assert ratios.std() / ratios.mean() < 0.05


def test_estimates_are_deterministic_in_the_seed():
    _, _, inputs = planted(seed=4, samples=1000)
    small = {**SAE, "steps": 200}
    first, again = (estimate_basis("sae", inputs, 8, small, seed=5) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, estimate_basis("sae", inputs, 8, small, seed=6))
    with pytest.raises(ValueError, match="unknown basis estimator 'pca'"):
        estimate_basis("pca", inputs, 8, {}, seed=0)


def test_a_feature_that_never_varies_gets_a_zero_column_and_a_solvable_basis():
    basis, x, _ = planted(seed=5)
    x[:, 3] = 0.0  # a blank pixel: no sample shows it
    inputs = embedded_inputs(x, basis)
    whiten, dewhiten = whitening(inputs)
    assert whiten.shape == dewhiten.shape == (8, 7)
    np.testing.assert_allclose(inputs @ whiten @ dewhiten.T, inputs, atol=1e-9)
    estimated = ica_basis(inputs, 8, **ICA, seed=0)
    assert np.linalg.norm(estimated, axis=0).min() == 0.0
    solvable = solvable_basis(estimated)
    assert solvable.shape == (8, 9)
    np.testing.assert_array_equal(solvable[:, :8], estimated)
    assert np.linalg.eigvalsh(solvable @ solvable.T)[0] > 0
    w1 = np.random.default_rng(0).normal(size=(2, 8))
    settings = MipSettings(enumerate_limit=0, threads=1)
    _, _, solutions = solve_layer(w1, solvable, 4, settings=settings, progress=False)
    assert {s.solver for s in solutions} <= {"branch-and-bound", "greedy"}


# --------------------------------------------------------------------------- the MIP


@pytest.fixture
def dense_net(tmp_path):
    nets = AlignNets.initialise(1, 12, 2, seed=0)
    path = tmp_path / "dense.safetensors"
    save_nets(path, nets, {"seed": "0"})
    return path, nets.variant(0)


@pytest.mark.parametrize(("structure", "enumerate_limit"), [("unstructured", 0), ("2of4", 10**6)])
def test_the_basis_path_with_c0_gives_the_oracles_solution_exactly(
    tmp_path, dense_net, structure, enumerate_limit
):
    net, weights = dense_net
    save_basis(tmp_path / "basis.npz", weights["C0"])
    settings = MipSettings(enumerate_limit=enumerate_limit, threads=1, node_limit=200)
    labels = {"structure": structure, "sparsity": 0.5, "settings": settings, "trial": 0}
    solve_align_mip(net, tmp_path / "oracle.npz", task="t", **labels)
    solve_align_basis_mip(
        net, tmp_path / "basis.npz", tmp_path / "sae.npz", estimator="sae", task="t", **labels
    )
    oracle, estimated = (load_mip_solution(tmp_path / f) for f in ("oracle.npz", "sae.npz"))
    for key in ("mask", "weights", "neuron_objective", "neuron_status"):
        np.testing.assert_array_equal(oracle[key], estimated[key])
    assert str(estimated["label_basis"]) == "sae"


def test_estimated_basis_methods_prune_from_their_own_solutions(dense_net):
    _, dense = dense_net
    keep = 6

    def solution(basis):
        mask, weights, _ = solve_layer(dense["W1"], basis, keep, settings=settings, progress=False)
        return {"mask": mask, "weights": weights}

    settings = MipSettings(threads=1)
    oracle = solution(dense["C0"])
    sae = solution(np.random.default_rng(1).normal(size=(12, 12)))
    nets, masks = prune_variants(
        dense,
        [("mip", 0.5), ("mip_sae", 0.5)],
        structure="unstructured",
        hessian=None,
        hessian_inverse=None,
        mip_solutions={0.5: oracle},
        basis_solutions={"sae": {0.5: sae}},
    )
    np.testing.assert_array_equal(masks, [oracle["mask"], sae["mask"]])
    np.testing.assert_allclose(nets.to_arrays()["W1"][1], sae["weights"], rtol=1e-6)
    with pytest.raises(ValueError, match="'flo_ica' needs the MIP solutions of the ica basis"):
        prune_variants(
            dense,
            [("flo_ica", 0.5)],
            structure="unstructured",
            hessian=np.eye(144),
            hessian_inverse=np.eye(144),
            mip_solutions={},
        )


# --------------------------------------------------------------------------- the table


def test_the_table_sets_estimated_bases_beside_the_oracle():
    methods = ["mp", "obd", "mip", "mip_sae", "flo_sae"]
    rows = [
        {
            "task": "dnf16",
            "structure": "unstructured",
            "method": method,
            "sparsity": 0.5,
            "stage": stage,
            "trial": trial,
            "test_accuracy": 0.5 + 0.1 * m + (0.05 if stage == "finetuned" else 0) + 0.01 * trial,
            "c1_divergence": 0.1 * m,
            "4P-positive": m + trial,
        }
        for (m, method), stage, trial in itertools.product(
            enumerate(methods), ("pruned", "finetuned"), (0, 1)
        )
    ]
    recovery_rows = pd.DataFrame(
        {"task": "dnf16", "trial": [0, 1], "estimator": "sae", "mean_best_cosine": [0.9, 0.8]}
    )
    table = basis_comparison(pd.DataFrame(rows), recovery_rows)
    assert list(table["method"]) == ["mp", "mip", "mip_sae", "flo_sae"]  # OBD is not compared
    assert list(table["basis"]) == ["weights", "C0", "sae", "sae"]
    sae = table.set_index("method").loc["mip_sae"]
    assert sae["trials"] == 2
    assert sae["accuracy_pruned_mean"] == pytest.approx(0.805)
    assert sae["accuracy_finetuned_mean"] == pytest.approx(0.855)
    assert sae["c1_divergence_mean"] == pytest.approx(0.3)
    assert sae["4P-positive_finetuned_mean"] == pytest.approx(3.5)
    assert sae["basis_recovery_mean"] == pytest.approx(0.85)
    assert np.isnan(table.set_index("method").loc["mip", "basis_recovery_mean"])
