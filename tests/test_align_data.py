from __future__ import annotations

import numpy as np
import pytest

from prunescope.align.data import (
    Dataset,
    active_count_range,
    digits_dataset,
    dnf_labels,
    load_dataset,
    random_read_once_dnf,
    sample_dnf_dataset,
    save_dataset,
)


def brute_force_label(sample: np.ndarray, clauses: np.ndarray) -> int:
    for clause in clauses:
        if all(sample[literal] > 0 for literal in clause):
            return 1
    return 0


@pytest.fixture(scope="module")
def dnf16() -> Dataset:
    return sample_dnf_dataset(16, 600, 201, seed=3)


def test_clauses_partition_the_literals():
    for literals in (4, 16, 32, 64):
        clauses = random_read_once_dnf(literals, np.random.default_rng(0))
        assert clauses.shape == (literals // 4, 4)
        assert clauses.dtype == np.int64
        assert sorted(clauses.ravel().tolist()) == list(range(literals))


@pytest.mark.parametrize("literals", [0, -4, 6, 17])
def test_literals_must_be_positive_multiple_of_four(literals):
    with pytest.raises(ValueError, match="multiple of 4"):
        random_read_once_dnf(literals, np.random.default_rng(0))


def test_dnf_labels_match_brute_force():
    rng = np.random.default_rng(1)
    clauses = random_read_once_dnf(12, rng)
    x = (rng.random((300, 12)) < 0.6) * 1.5
    expected = [brute_force_label(row, clauses) for row in x]
    labels = dnf_labels(x, clauses)
    assert labels.dtype == np.int64
    assert labels.tolist() == expected
    assert 0 < labels.sum() < len(labels)


def test_dnf_labels_rejects_bad_clauses():
    with pytest.raises(ValueError, match="outside"):
        dnf_labels(np.zeros((2, 8)), np.array([[0, 1, 2, 3], [4, 5, 6, 8]]))
    with pytest.raises(ValueError, match="shape"):
        dnf_labels(np.zeros((2, 8)), np.arange(8).reshape(2, 4, 1))


def test_sampled_labels_equal_the_formula(dnf16):
    for x, y in ((dnf16.x_train, dnf16.y_train), (dnf16.x_test, dnf16.y_test)):
        assert y.tolist() == [brute_force_label(row, dnf16.clauses) for row in x]


def test_class_balance_is_exact(dnf16):
    assert np.bincount(dnf16.y_train).tolist() == [300, 300]
    # Odd split: negatives get the extra sample.
    assert np.bincount(dnf16.y_test).tolist() == [101, 100]


def test_active_counts_and_values(dnf16):
    low, high = active_count_range(16)
    assert (low, high) == (4, 6)
    assert active_count_range(64) == (16, 24)
    for x in (dnf16.x_train, dnf16.x_test):
        assert x.dtype == np.float32
        assert set(np.unique(x).tolist()) == {0.0, 1.5}
        active = (x != 0).sum(axis=1)
        assert active.min() >= low and active.max() <= high
    # Every allowed k occurs among negatives (positives favour large k by construction).
    negatives = (dnf16.x_train[dnf16.y_train == 0] != 0).sum(axis=1)
    assert set(negatives.tolist()) == {4, 5, 6}


def test_custom_active_value():
    ds = sample_dnf_dataset(12, 20, 10, active_value=1.0, seed=0)
    assert set(np.unique(ds.x_train).tolist()) == {0.0, 1.0}


def test_active_literals_cover_every_position(dnf16):
    assert ((dnf16.x_train != 0).sum(axis=0) > 0).all()


def test_same_seed_same_data_and_different_seed_different_formula(dnf16):
    again = sample_dnf_dataset(16, 600, 201, seed=3)
    for name in ("x_train", "y_train", "x_test", "y_test", "clauses"):
        np.testing.assert_array_equal(getattr(again, name), getattr(dnf16, name))
    other = sample_dnf_dataset(16, 600, 201, seed=4)
    assert not np.array_equal(other.clauses, dnf16.clauses)
    assert not np.array_equal(other.x_train, dnf16.x_train)


def test_train_and_test_are_different_samples(dnf16):
    assert not np.array_equal(dnf16.x_train[:201], dnf16.x_test)


@pytest.mark.parametrize(
    "kwargs", [{"n_train": 0}, {"n_test": -1}, {"active_value": 0.0}, {"literals": 8}]
)
def test_sample_rejects_bad_arguments(kwargs):
    arguments = {"literals": 16, "n_train": 10, "n_test": 10, "seed": 0} | kwargs
    with pytest.raises(ValueError):
        sample_dnf_dataset(**arguments)


def test_larger_formula_is_balanced():
    ds = sample_dnf_dataset(64, 2000, 500, seed=0)
    assert np.bincount(ds.y_train).tolist() == [1000, 1000]
    np.testing.assert_array_equal(ds.y_train, dnf_labels(ds.x_train, ds.clauses))
    active = (ds.x_train != 0).sum(axis=1)
    assert active.min() >= 16 and active.max() <= 24


def test_digits_split_is_stratified_and_deterministic():
    ds = digits_dataset(test_fraction=0.2, seed=0)
    assert ds.classes == 10 and ds.clauses is None
    assert ds.x_train.shape[1] == 64 and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int64
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() == 1.0
    all_counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]), minlength=10)
    test_counts = np.bincount(ds.y_test, minlength=10)
    # Stratified: every class's test share is within one sample of the overall fraction.
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1)
    again = digits_dataset(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    np.testing.assert_array_equal(again.y_train, ds.y_train)
    other = digits_dataset(test_fraction=0.2, seed=1)
    assert not np.array_equal(other.y_test, ds.y_test)


def test_digits_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        digits_dataset(test_fraction=1.0, seed=0)


def test_save_load_round_trip(tmp_path, dnf16):
    path = tmp_path / "sub" / "dnf.npz"
    save_dataset(path, dnf16)
    assert path.exists() and not (tmp_path / "sub" / "dnf.npz.partial").exists()
    loaded = load_dataset(path)
    for name in ("x_train", "y_train", "x_test", "y_test", "clauses"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(dnf16, name))
        assert getattr(loaded, name).dtype == getattr(dnf16, name).dtype
    assert loaded.classes == 2

    digits = digits_dataset(test_fraction=0.25, seed=2)
    save_dataset(tmp_path / "digits.npz", digits)
    loaded = load_dataset(tmp_path / "digits.npz")
    assert loaded.clauses is None and loaded.classes == 10
    np.testing.assert_array_equal(loaded.x_test, digits.x_test)
