"""Feature bases estimated without the embedding C0, from the embedded inputs x' = C0·x alone
(paper appendix A.11: an SAE's dictionary in place of the oracle's C0).

The MIP oracle keeps, per neuron, the row w' closest to w in ``Σ_j ((w - w')·c_j)²`` over the
columns c_j of C0, one per input feature x_j. An estimated basis B stands in for C0 there, so
each of its columns must weigh the feature it stands for as C0's column does. Since
x' = Σ_j x_j c_j, a column is scaled to c_j·rms(x_j): an SAE atom (unit norm) times the RMS
of its code over the training set, FastICA's mixing column as it comes (its sources have unit
variance, so the column carries the feature's own scale: its standard deviation, where the
SAE's carries its RMS). A feature's scale cannot be told apart from its column's length from
x' alone, so the estimated objective weighs each feature by its spread in the data, which C0
does not: for DNF literals (0 or 1.5, each about as often) this is nearly one factor common
to every feature, for Digits pixels (their spread varies from pixel to pixel) it is not, and
part of any gap to the oracle there comes from this weighting, not from a wrong direction. A
feature that never varies gets a zero column, as it changes no pre-activation on the data.

A direction of x' that the training data never takes (Digits' blank corner pixels) is
spanned by no column, so Q = B·Bᵀ is singular and every neuron would go to SCIP, two orders
of magnitude slower than the branch and bound. :func:`solvable_basis` gives those
directions a weight :data:`RIDGE` times Q's mean diagonal: small enough to only break ties
between rows that differ on features the data never shows.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from prunescope.align.methods import ESTIMATORS

log = logging.getLogger("prunescope")

RANK_TOLERANCE = 1e-10
"""An eigenvalue of the inputs' second moment below this fraction of the largest marks a
direction the data does not span (Digits' blank pixels sit at 1e-32, its faintest real
directions near 1e-8)."""
RIDGE = 1e-6
"""Weight of the directions a basis leaves unspanned, relative to the mean diagonal of Q
(trained nets' own C0 reach λ_min(Q) ≈ 1e-5 of it, which the branch and bound handles)."""


def embedded_inputs(x: np.ndarray, C0: np.ndarray) -> np.ndarray:
    """x' = C0·x for every row of ``x`` (n, d_in): what the hidden layer sees, (n, d)."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(C0, dtype=np.float64).T


def whitening(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps into and out of coordinates where the second moment of ``x`` (n, d) is the identity,
    over the r directions the data spans: ``(whiten (d, r), dewhiten (d, r))``, so that
    ``x @ whiten`` are the coordinates and ``coordinates @ dewhiten.T`` gives x back."""
    x = np.asarray(x, dtype=np.float64)
    values, vectors = np.linalg.eigh(x.T @ x / len(x))
    if values[-1] <= 0:
        raise ValueError("the inputs are all zero, so they span no feature direction")
    spanned = values > RANK_TOLERANCE * values[-1]
    roots, vectors = np.sqrt(values[spanned]), vectors[:, spanned]
    return vectors / roots, vectors * roots


def column_cosines(true: np.ndarray, estimated: np.ndarray) -> np.ndarray:
    """|cos| between every column of ``true`` (d, k) and of ``estimated`` (d, k'): (k, k').
    A zero column is orthogonal to everything."""

    def unit(matrix: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(matrix, axis=0)
        return matrix / np.where(norms > 0, norms, 1.0)

    true, estimated = np.asarray(true, np.float64), np.asarray(estimated, np.float64)
    if true.ndim != 2 or estimated.ndim != 2 or true.shape[0] != estimated.shape[0]:
        raise ValueError(f"bases of shapes {true.shape} and {estimated.shape} do not compare")
    return np.abs(unit(true).T @ unit(estimated))


def recovery(true: np.ndarray, estimated: np.ndarray) -> dict:
    """How well ``estimated`` recovers the columns of ``true``: for each true feature the best
    |cos| with any estimated column, their mean and their minimum."""
    best = column_cosines(true, estimated).max(axis=1)
    return {
        "features": int(best.size),
        "mean_best_cosine": float(best.mean()),
        "min_best_cosine": float(best.min()),
        "best_cosine": best.round(6).tolist(),
    }


# --------------------------------------------------------------------------- estimators


def sae_basis(
    x: np.ndarray, atoms: int, *, l1: float, steps: int, lr: float, batch_size: int, seed: int
) -> np.ndarray:
    """The dictionary of a ReLU sparse autoencoder with an L1 penalty, trained on ``x`` (n, d):
    ``atoms`` columns (d, atoms), each scaled by the RMS of its code.

    The SAE sees the whitened inputs: with C0 as ill-conditioned as trained nets make it, the
    raw inputs leave Adam crawling along their small directions and the L1 penalty weighing
    directions unequally; whitened, it recovers a planted basis exactly where the raw inputs
    leave a third of the atoms half-way. No decoder bias, as x' = C0·x is 0 where no feature
    is active.
    """
    whiten, dewhiten = whitening(x)
    decoder, codes = train_sae(
        x @ whiten, atoms, l1=l1, steps=steps, lr=lr, batch_size=batch_size, seed=seed
    )
    return scale_by_codes(dewhiten @ decoder, codes)


def train_sae(
    inputs: np.ndarray, atoms: int, *, l1: float, steps: int, lr: float, batch_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Adam on ``‖s·Dᵀ - x‖² + l1·‖s‖₁`` with s = ReLU(x·Eᵀ + b) and unit-norm atoms D, in
    float64 from ``seed`` alone; returns the atoms (r, atoms) and the codes (n, atoms)."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float64))
    start = torch.randn(data.shape[1], atoms, generator=generator, dtype=torch.float64)
    decoder = torch.nn.Parameter(start / start.norm(dim=0))
    encoder = torch.nn.Parameter(decoder.detach().T.clone())
    bias = torch.nn.Parameter(torch.zeros(atoms, dtype=torch.float64))
    optimiser = torch.optim.Adam([decoder, encoder, bias], lr=lr)

    def encode(batch: torch.Tensor) -> torch.Tensor:
        return torch.relu(batch @ encoder.T + bias)

    for _ in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=generator)]
        codes = encode(batch)
        error = codes @ (decoder / decoder.norm(dim=0)).T - batch
        loss = error.pow(2).sum(dim=1).mean() + l1 * codes.sum(dim=1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return (decoder / decoder.norm(dim=0)).numpy(), encode(data).numpy()


def scale_by_codes(directions: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each column of ``directions`` (d, k) times the RMS of its code over the samples (n, k)."""
    return directions * np.sqrt(np.mean(np.square(codes), axis=0))


def ica_basis(
    x: np.ndarray, components: int, *, max_iter: int, tol: float, seed: int
) -> np.ndarray:
    """FastICA's mixing matrix on ``x`` (n, d), whitened to unit-variance sources: (d, components).

    FastICA whitens by the centred covariance, which a feature that never varies leaves
    singular: it then returns no finite source. It gets as many components as the data
    spans, and the features beyond that zero columns.
    """
    from sklearn.decomposition import FastICA

    spanned = whitening(x - x.mean(axis=0))[0].shape[1]
    ica = FastICA(
        n_components=min(components, spanned),
        whiten="unit-variance",
        random_state=seed,
        max_iter=max_iter,
        tol=tol,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ica.fit(x)
    for warning in caught:
        log.warning("FastICA: %s", warning.message)
    mixing = np.zeros((x.shape[1], components))
    mixing[:, : ica.mixing_.shape[1]] = ica.mixing_
    return mixing


def estimate_basis(estimator: str, x: np.ndarray, features: int, settings: dict, seed: int):
    """The ``features`` columns (d, features) that ``estimator`` finds in the embedded inputs
    ``x``, with its ``settings`` (the config's ``align.basis.<estimator>``)."""
    if estimator == "sae":
        return sae_basis(x, features, **settings, seed=seed)
    if estimator == "ica":
        return ica_basis(x, features, **settings, seed=seed)
    raise ValueError(f"unknown basis estimator {estimator!r}; known ones are {ESTIMATORS}")


def solvable_basis(basis: np.ndarray) -> np.ndarray:
    """``basis`` (d, k) with a column ``sqrt(RIDGE·mean diag Q)·u`` for every direction u it
    leaves unspanned, so that Q = B·Bᵀ is invertible; a basis of full rank is returned as is."""
    basis = np.asarray(basis, dtype=np.float64)
    Q = basis @ basis.T
    values, vectors = np.linalg.eigh(Q)
    if values[-1] <= 0:
        raise ValueError("the basis is all zeros, so it weighs no feature")
    unspanned = vectors[:, values <= RANK_TOLERANCE * values[-1]]
    if not unspanned.shape[1]:
        return basis
    ridge = np.sqrt(RIDGE * np.trace(Q) / len(Q))
    return np.hstack([basis, ridge * unspanned])
