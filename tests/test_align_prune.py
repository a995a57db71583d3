from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from prunescope.align.prune import (
    METHODS,
    NEEDS_HESSIAN,
    NEEDS_HESSIAN_INVERSE,
    NEEDS_MIP,
    block_shape,
    check_mask,
    damped_inverse,
    magnitude_scores,
    obd_scores,
    obs_scores,
    obs_update,
    prune_w1,
    quadratic_increase,
    relative_divergence,
    select_mask,
)
from prunescope.align.structures import keep_count


def _spd(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(size, size))
    return A @ A.T / size + 0.1 * np.eye(size)


def _brute_force_row(scores: np.ndarray, keep: int, block) -> tuple[float, tuple[int, ...]]:
    """Best feasible kept set of one row by enumeration."""
    best = (-np.inf, ())
    for kept in itertools.combinations(range(scores.size), keep):
        if block is not None:
            n, m = block
            if any(sum(1 for j in kept if j // m == b) > n for b in range(scores.size // m)):
                continue
        best = max(best, (float(scores[list(kept)].sum()), kept))
    return best


# ----------------------------------------------------------------- masks


def test_keep_count():
    assert keep_count(16, 0.0) == 16
    assert keep_count(16, 0.5) == 8
    assert keep_count(10, 0.75) == 2  # round(7.5) = 8 (round half to even)
    assert keep_count(10, 0.85) == 2  # round(8.5) = 8
    assert keep_count(64, 0.9) == 6
    for bad in (-0.1, 1.0, 1.2):
        with pytest.raises(ValueError, match="sparsity"):
            keep_count(8, bad)
    with pytest.raises(ValueError, match="no weight"):
        keep_count(4, 0.9)


@pytest.mark.parametrize("block", [None, (2, 4), (1, 4), (3, 4)])
@pytest.mark.parametrize("keep", [1, 2, 3, 4, 5])
def test_select_mask_matches_brute_force(block, keep):
    rng = np.random.default_rng(keep)
    scores = rng.normal(size=(6, 8))
    if block is not None and keep > block[0] * 2:
        with pytest.raises(ValueError, match="exceeds"):
            select_mask(scores, keep, block)
        return

    mask = select_mask(scores, keep, block)

    check_mask(mask, keep, block)
    for row, kept in zip(scores, mask, strict=True):
        best_sum, best_set = _brute_force_row(row, keep, block)
        assert row[kept].sum() == pytest.approx(best_sum)
        assert tuple(np.flatnonzero(kept)) == best_set  # continuous scores: optimum is unique


def test_select_mask_breaks_ties_by_lower_column():
    scores = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(select_mask(scores, 3)[0], [1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(select_mask(scores, 3, (2, 4))[0], [1, 1, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(select_mask(scores, 4, (2, 4))[0], [1, 1, 0, 0, 1, 1, 0, 0])


def test_select_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="does not divide"):
        select_mask(np.ones((2, 6)), 2, (2, 4))
    with pytest.raises(ValueError, match="keep"):
        select_mask(np.ones((2, 6)), 0)
    with pytest.raises(ValueError, match="NaN"):
        select_mask(np.array([[1.0, np.nan]]), 1)


def test_check_mask_rejects_wrong_counts_and_blocks():
    mask = np.array([[True, True, True, False, False, False, False, False]])
    check_mask(mask, 3)
    with pytest.raises(ValueError, match="per row"):
        check_mask(mask, 2)
    with pytest.raises(ValueError, match="block"):
        check_mask(mask, 3, (2, 4))


# ----------------------------------------------------------------- saliencies


def test_magnitude_and_obd_scores_match_explicit_formula():
    rng = np.random.default_rng(0)
    W1 = rng.normal(size=(3, 4))
    H = _spd(12, 1)

    obd = obd_scores(W1, H)

    np.testing.assert_array_equal(magnitude_scores(W1), np.abs(W1))
    for i, j in itertools.product(range(3), range(4)):
        k = i * 4 + j
        assert obd[i, j] == pytest.approx(0.5 * H[k, k] * W1[i, j] ** 2)
    with pytest.raises(ValueError, match="H has shape"):
        obd_scores(W1, H[:4, :4])


def test_obs_scores_equal_single_weight_obs_increase():
    rng = np.random.default_rng(2)
    W1 = rng.normal(size=(3, 4))
    H = _spd(12, 3)
    H_inv = np.linalg.inv(H)

    scores = obs_scores(W1, H_inv)

    for i, j in itertools.product(range(3), range(4)):
        mask = np.ones_like(W1, dtype=bool)
        mask[i, j] = False
        updated = obs_update(W1, H_inv, mask)
        assert scores[i, j] == pytest.approx(quadratic_increase(W1, updated, H), rel=1e-9)


def test_damped_inverse_of_positive_definite_and_singular_hessians(caplog):
    H = _spd(10, 4)
    np.testing.assert_allclose(damped_inverse(H, 0.0), np.linalg.inv(H), rtol=1e-9, atol=1e-9)

    rng = np.random.default_rng(5)
    A = rng.normal(size=(10, 4))
    singular = A @ A.T
    damping = 0.01
    expected = np.linalg.inv(singular + damping * np.trace(singular) / 10 * np.eye(10))
    np.testing.assert_allclose(damped_inverse(singular, damping), expected, rtol=1e-8, atol=1e-8)

    with caplog.at_level(logging.WARNING, logger="prunescope"):
        pseudo = damped_inverse(singular, 0.0)
    assert "pseudo-inverse" in caplog.text
    np.testing.assert_allclose(pseudo, np.linalg.pinv(singular), rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(pseudo, pseudo.T)
    with pytest.raises(ValueError, match="damping"):
        damped_inverse(H, -1.0)


# ----------------------------------------------------------------- OBS update


def _random_mask(h: int, d: int, keep: int, seed: int) -> np.ndarray:
    return select_mask(np.random.default_rng(seed).random((h, d)), keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_obs_update_is_optimal_for_the_quadratic_model(seed):
    rng = np.random.default_rng(seed)
    h, d = 3, 5
    W1 = rng.normal(size=(h, d))
    H = _spd(h * d, seed + 10)
    H_inv = np.linalg.inv(H)
    mask = _random_mask(h, d, 2, seed)
    pruned = np.flatnonzero(~mask.reshape(-1))
    free = np.flatnonzero(mask.reshape(-1))
    w = W1.reshape(-1)

    updated = obs_update(W1, H_inv, mask)

    assert np.all(updated[~mask] == 0.0)
    increase = quadratic_increase(W1, updated, H)
    closed_form = 0.5 * w[pruned] @ np.linalg.solve(H_inv[np.ix_(pruned, pruned)], w[pruned])
    assert increase == pytest.approx(closed_form, rel=1e-9)
    # Direct solution: fix Δw_S = -w_S and minimise the quadratic over the free entries.
    delta_free = np.linalg.solve(H[np.ix_(free, free)], H[np.ix_(free, pruned)] @ w[pruned])
    delta = np.zeros_like(w)
    delta[pruned], delta[free] = -w[pruned], delta_free
    assert increase == pytest.approx(0.5 * delta @ H @ delta, rel=1e-9)
    np.testing.assert_allclose(updated.reshape(-1), w + delta, atol=1e-10)
    # Any other completion does worse.
    other = delta.copy()
    other[free] += 1e-3 * rng.normal(size=free.size)
    assert 0.5 * other @ H @ other > increase


def test_obs_update_without_pruning_is_identity_and_checks_shapes():
    W1 = np.arange(6.0).reshape(2, 3)
    H_inv = np.eye(6)
    np.testing.assert_array_equal(obs_update(W1, H_inv, np.ones((2, 3), bool)), W1)
    with pytest.raises(ValueError, match="mask has shape"):
        obs_update(W1, H_inv, np.ones((3, 2), bool))


def test_quadratic_increase_and_relative_divergence():
    H = np.diag([2.0, 4.0])
    assert quadratic_increase(np.array([[1.0, 1.0]]), np.array([[0.0, 2.0]]), H) == 3.0
    assert relative_divergence(np.array([3.0, 4.0]), np.array([0.0, 5.0])) == pytest.approx(
        np.sqrt(10) / 5
    )
    with pytest.raises(ValueError, match="all zeros"):
        relative_divergence(np.ones(2), np.zeros(2))


# ----------------------------------------------------------------- methods


def test_method_tables():
    assert METHODS == ("mp", "obd", "obs", "mip", "flo", "obs_mask", "mip_mask")
    assert NEEDS_MIP == {"mip", "flo", "mip_mask"}
    assert NEEDS_HESSIAN == {"obd", "obs", "flo", "obs_mask"}
    assert NEEDS_HESSIAN_INVERSE < NEEDS_HESSIAN


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(42)
    h, d = 4, 8
    W1 = rng.normal(size=(h, d))
    H = _spd(h * d, 43)
    return W1, H, damped_inverse(H, 1e-3)


@pytest.mark.parametrize("block", [None, (2, 4)])
@pytest.mark.parametrize("method", METHODS)
def test_prune_w1_keeps_exact_counts(problem, method, block):
    W1, H, H_inv = problem
    keep = 3
    mip_mask = select_mask(np.random.default_rng(9).random(W1.shape), keep, block)
    mip_weights = np.where(mip_mask, 2.0 * W1, 1e-12)  # off-support round-off must vanish

    weights, mask = prune_w1(
        method, W1, keep=keep, block=block, H=H, H_inv=H_inv,
        mip_mask=mip_mask, mip_weights=mip_weights,
    )  # fmt: skip

    check_mask(mask, keep, block)
    assert weights.shape == W1.shape and np.all(weights[~mask] == 0.0)
    if method in ("mp", "obd", "obs_mask", "mip_mask"):
        np.testing.assert_array_equal(weights[mask], W1[mask])
    if method in NEEDS_MIP:
        np.testing.assert_array_equal(mask, mip_mask)
    if method == "mip":
        np.testing.assert_array_equal(weights[mask], 2.0 * W1[mask])
    if method in ("obs", "flo"):
        np.testing.assert_allclose(weights, obs_update(W1, H_inv, mask))


def test_prune_w1_masks_follow_their_scores(problem):
    W1, H, H_inv = problem
    assert np.array_equal(prune_w1("mp", W1, keep=2)[1], select_mask(np.abs(W1), 2))
    assert np.array_equal(prune_w1("obd", W1, keep=2, H=H)[1], select_mask(obd_scores(W1, H), 2))
    obs_mask = select_mask(obs_scores(W1, H_inv), 2)
    assert np.array_equal(prune_w1("obs", W1, keep=2, H_inv=H_inv)[1], obs_mask)
    assert np.array_equal(prune_w1("obs_mask", W1, keep=2, H_inv=H_inv)[1], obs_mask)


def test_flo_with_the_obs_mask_equals_obs(problem):
    W1, _, H_inv = problem
    obs_weights, obs_mask = prune_w1("obs", W1, keep=3, block=(2, 4), H_inv=H_inv)

    flo_weights, flo_mask = prune_w1(
        "flo", W1, keep=3, block=(2, 4), H_inv=H_inv, mip_mask=obs_mask
    )

    np.testing.assert_array_equal(flo_mask, obs_mask)
    np.testing.assert_array_equal(flo_weights, obs_weights)


def test_obs_beats_obs_mask_on_the_quadratic_model(problem):
    W1, H, _ = problem
    H_inv = np.linalg.inv(H)
    obs_weights, _ = prune_w1("obs", W1, keep=3, H_inv=H_inv)
    dense_weights, _ = prune_w1("obs_mask", W1, keep=3, H_inv=H_inv)
    assert quadratic_increase(W1, obs_weights, H) < quadratic_increase(W1, dense_weights, H)


def test_prune_w1_reports_missing_inputs_and_unknown_methods(problem):
    W1, H, H_inv = problem
    mask = select_mask(np.abs(W1), 3)
    with pytest.raises(ValueError, match="needs H$"):
        prune_w1("obd", W1, keep=3)
    for method in ("obs", "obs_mask"):
        with pytest.raises(ValueError, match="needs H_inv"):
            prune_w1(method, W1, keep=3, H=H)
    with pytest.raises(ValueError, match="needs mip_mask and mip_weights"):
        prune_w1("mip", W1, keep=3)
    with pytest.raises(ValueError, match="needs mip_weights"):
        prune_w1("mip", W1, keep=3, mip_mask=mask)
    with pytest.raises(ValueError, match="needs H_inv"):
        prune_w1("flo", W1, keep=3, mip_mask=mask)
    with pytest.raises(ValueError, match="needs mip_mask"):
        prune_w1("mip_mask", W1, keep=3)
    with pytest.raises(ValueError, match="known methods are .*'mp'.*'mip_mask'"):
        prune_w1("wanda", W1, keep=3)
    with pytest.raises(ValueError, match="per row"):
        prune_w1("mip_mask", W1, keep=2, mip_mask=mask)
    with pytest.raises(ValueError, match="mip_mask has shape"):
        prune_w1("mip_mask", W1, keep=3, mip_mask=mask[:2])
    with pytest.raises(ValueError, match="mip_weights has shape"):
        prune_w1("mip", W1, keep=3, mip_mask=mask, mip_weights=W1[:2])


def test_block_shape_normalises_and_names_what_is_wrong():
    assert block_shape(8, None) is None
    assert block_shape(8, (2.0, 4)) == (2, 4)
    with pytest.raises(ValueError, match="a pair"):
        block_shape(8, (1, 2, 4))
    with pytest.raises(ValueError, match="1 <= n <= m"):
        block_shape(8, (3, 2))
    with pytest.raises(ValueError, match="m=3 does not divide the row length d=8"):
        block_shape(8, (2, 3))
