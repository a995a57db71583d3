"""Datasets for the ALIGN study: balanced read-once monotone DNF samples and sklearn Digits.

DNF task (paper appendix A.1): m literals are partitioned into m/4 clauses of four; the label
is the OR over clauses of the AND of their literals. Each sample activates k distinct literals
(k uniform on the integers in [m/4, floor(1.5 m/4)]) at value ``active_value``; the rest are 0.
Candidates are drawn in vectorised batches and a candidate is accepted only while its class is
below its share of the split, which is the paper's sequential rule applied to a stream.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from prunescope.artifacts import read_npz
from prunescope.io import atomic_path

log = logging.getLogger("prunescope")

CLAUSE_SIZE = 4
# Candidate batches are capped by element count so memory stays near 100 MB whatever m is.
_MAX_BATCH_ELEMENTS = 1 << 24


@dataclass
class Dataset:
    """Train/test split: x float32 (n, d_in), y int64 (n,); ``clauses`` only for DNF data."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    clauses: np.ndarray | None
    classes: int


def random_read_once_dnf(literals: int, rng: np.random.Generator) -> np.ndarray:
    """A random partition of ``range(literals)`` into clauses of four, int64 (literals // 4, 4)."""
    if not isinstance(literals, int | np.integer) or literals <= 0 or literals % CLAUSE_SIZE:
        raise ValueError(f"literals must be a positive multiple of 4, got {literals!r}.")
    return rng.permutation(literals).astype(np.int64).reshape(-1, CLAUSE_SIZE)


def dnf_labels(x: np.ndarray, clauses: np.ndarray) -> np.ndarray:
    """Label 1 where some clause has all four of its literals active (x > 0), else 0 (int64)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D array (samples, literals), got shape {x.shape}.")
    clauses = check_clauses(clauses, x.shape[1])
    satisfied = (x[:, clauses] > 0).all(axis=2).any(axis=1)
    return satisfied.astype(np.int64)


def active_count_range(literals: int) -> tuple[int, int]:
    """Inclusive range of the number of active literals per sample: [m/4, floor(1.5 m/4)]."""
    clauses = literals // CLAUSE_SIZE
    return clauses, (3 * clauses) // 2


def sample_dnf_dataset(
    literals: int,
    n_train: int,
    n_test: int,
    *,
    active_value: float = 1.5,
    seed: int,
) -> Dataset:
    """A fresh random DNF formula and class-balanced train and test samples from ``seed``.

    Each split gets ``n // 2`` positives and ``n - n // 2`` negatives (exactly half of each when
    ``n`` is even); train and test are generated separately, train first, from one generator.
    """
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int | np.integer) or n <= 0:
            raise ValueError(f"{name} must be a positive integer, got {n!r}.")
    if not active_value > 0:
        raise ValueError(
            f"active_value must be positive so active literals read as x > 0, got {active_value!r}."
        )
    if literals < 12:
        # With fewer than 12 literals at most floor(1.5 m/4) < 4 are active: no positive exists.
        raise ValueError(
            f"literals must be at least 12 for positive samples to exist, got {literals!r}."
        )
    rng = np.random.default_rng(seed)
    clauses = random_read_once_dnf(literals, rng)
    x_train, y_train = _sample_balanced(clauses, literals, n_train, active_value, rng)
    x_test, y_test = _sample_balanced(clauses, literals, n_test, active_value, rng)
    return Dataset(x_train, y_train, x_test, y_test, clauses, classes=2)


def _sample_balanced(
    clauses: np.ndarray, literals: int, n: int, active_value: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    caps = np.array([n - n // 2, n // 2])  # negatives, positives
    accepted_x: list[np.ndarray] = []
    accepted_y: list[np.ndarray] = []
    counts = np.zeros(2, dtype=np.int64)
    seen = np.zeros(2, dtype=np.int64)
    max_rows = max(1, _MAX_BATCH_ELEMENTS // literals)
    while (counts < caps).any():
        rows = _next_batch_rows(caps - counts, seen, max_rows)
        x = _sample_inputs(literals, rows, active_value, rng)
        y = dnf_labels(x, clauses)
        seen += np.bincount(y, minlength=2)
        # Taking the first `remaining` candidates of each class keeps exactly the samples the
        # one-at-a-time rule would keep, in stream order.
        keep = np.zeros(rows, dtype=bool)
        for label in (0, 1):
            where = np.flatnonzero(y == label)[: caps[label] - counts[label]]
            keep[where] = True
            counts[label] += where.size
        accepted_x.append(x[keep])
        accepted_y.append(y[keep])
    log.debug("sampled %d DNF examples from %d candidates", n, int(seen.sum()))
    return np.concatenate(accepted_x), np.concatenate(accepted_y)


def _next_batch_rows(remaining: np.ndarray, seen: np.ndarray, max_rows: int) -> int:
    # Laplace-smoothed class rates from the candidates so far; overshoot by 20% to usually
    # finish in one more batch.
    rates = (seen + 1) / (seen.sum() + 2)
    needed = np.where(remaining > 0, remaining / rates, 0).max()
    return int(min(max_rows, max(1024, 1.2 * needed)))


def _sample_inputs(
    literals: int, rows: int, active_value: float, rng: np.random.Generator
) -> np.ndarray:
    low, high = active_count_range(literals)
    k = rng.integers(low, high + 1, size=rows)
    keys = rng.random((rows, literals), dtype=np.float32)
    # The k smallest of i.i.d. keys are a uniformly random k-subset of the literals.
    kth_smallest = np.sort(keys, axis=1)[np.arange(rows), k - 1]
    active = keys <= kth_smallest[:, None]
    return np.where(active, np.float32(active_value), np.float32(0))


def digits_dataset(*, test_fraction: float, seed: int) -> Dataset:
    """sklearn Digits (8x8, 10 classes) with a stratified train/test split.

    Pixel values (0..16 in the raw data) are divided by 16 so that x lies in [0, 1]. The split is
    ``train_test_split(stratify=y, random_state=seed)`` with ``test_size=test_fraction``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}.")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return Dataset(x_train, y_train, x_test, y_test, clauses=None, classes=10)


def dataset_from_options(options: dict) -> Dataset:
    """The dataset a task's options describe (``align.plan.dataset_options``): a fresh DNF
    sample for ``kind`` "dnf", else the Digits split."""
    if options["kind"] == "dnf":
        return sample_dnf_dataset(
            options["literals"],
            options["n_train"],
            options["n_test"],
            active_value=options["active_value"],
            seed=options["seed"],
        )
    return digits_dataset(test_fraction=options["test_fraction"], seed=options["split_seed"])


DATASET_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "classes")


def save_dataset(path: str | os.PathLike, ds: Dataset) -> None:
    """Write ``ds`` to an .npz file atomically (``clauses`` stored only when present)."""
    arrays = {
        "x_train": ds.x_train,
        "y_train": ds.y_train,
        "x_test": ds.x_test,
        "y_test": ds.y_test,
        "classes": np.array(ds.classes, dtype=np.int64),
    }
    if ds.clauses is not None:
        arrays["clauses"] = ds.clauses
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # A file handle stops numpy from appending ".npz" to the temporary name.
        np.savez(handle, **arrays)


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read a dataset written by :func:`save_dataset`."""
    data = read_npz(path, "ALIGN dataset", required=DATASET_ARRAYS)
    return Dataset(
        x_train=data["x_train"],
        y_train=data["y_train"],
        x_test=data["x_test"],
        y_test=data["y_test"],
        clauses=data.get("clauses"),
        classes=int(data["classes"]),
    )


def check_clauses(clauses: np.ndarray, literals: int) -> np.ndarray:
    """``clauses`` as an array after checking it is an integer (n, 4) index into range(literals)."""
    clauses = np.asarray(clauses)
    if clauses.ndim != 2 or clauses.shape[1] != CLAUSE_SIZE:
        raise ValueError(f"clauses must have shape (n_clauses, 4), got {clauses.shape}.")
    if not np.issubdtype(clauses.dtype, np.integer):
        raise ValueError(f"clauses must hold integer literal indices, got dtype {clauses.dtype}.")
    if clauses.size and (clauses.min() < 0 or clauses.max() >= literals):
        raise ValueError(f"clauses index literals outside range({literals}).")
    return clauses
