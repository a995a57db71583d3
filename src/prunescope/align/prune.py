"""Pruning W1 of the single net: masks, saliencies and the OBS update (paper section 3, A.3, A.9).

Every method keeps the same number ``keep`` of weights in each row of W1 (per neuron), optionally
with at most ``n`` kept in every block of ``m`` contiguous columns (``block=(2, 4)``, "≥2:4").
All maths is numpy float64. The loss Hessian H is over the flattened W1 (flat index i*d + j).

Methods (``METHODS``):
  mp        magnitude mask |w|, dense values kept;
  obd       OBD saliency ½ H_kk w_k² mask, dense values kept;
  obs       OBS saliency w_k² / (2 [H⁻¹]_kk) mask, then the joint OBS compensation;
  mip       mask and weights from the feature-space MIP oracle (solved elsewhere);
  flo       MIP mask on the dense weights, then the joint OBS compensation;
  obs_mask  OBS mask, dense values kept;
  mip_mask  MIP mask, dense values kept.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg

log = logging.getLogger("prunescope")

METHODS = ("mp", "obd", "obs", "mip", "flo", "obs_mask", "mip_mask")
NEEDS_HESSIAN = frozenset({"obd", "obs", "flo", "obs_mask"})
NEEDS_HESSIAN_INVERSE = frozenset({"obs", "flo", "obs_mask"})
NEEDS_MIP = frozenset({"mip", "flo", "mip_mask"})

# --------------------------------------------------------------------------- masks


def block_shape(d: int, block: tuple[int, int] | None) -> tuple[int, int] | None:
    """``block`` as an ``(n, m)`` pair of ints, checked against the row length ``d``."""
    if block is None:
        return None
    if len(block) != 2:
        raise ValueError(f"block must be None or a pair (n, m), got {block!r}")
    n, m = int(block[0]), int(block[1])
    if not 1 <= n <= m:
        raise ValueError(f"block (n, m) needs 1 <= n <= m, got {block!r}")
    if d % m:
        raise ValueError(f"block size m={m} does not divide the row length d={d}")
    return n, m


def _check_keep_and_block(d: int, keep: int, block: tuple[int, int] | None) -> None:
    if not 1 <= keep <= d:
        raise ValueError(f"keep must lie in [1, {d}], got {keep}")
    shape = block_shape(d, block)
    if shape is not None and keep > shape[0] * (d // shape[1]):
        n, m = shape
        raise ValueError(f"keep={keep} exceeds the {n * (d // m)} weights a {n}:{m} row allows")


def select_mask(scores: np.ndarray, keep: int, block: tuple[int, int] | None = None) -> np.ndarray:
    """Per row, keep the ``keep`` highest scores; with ``block=(n, m)`` at most n per m columns.

    Kept sets of one row form a (truncated partition) matroid, so the greedy choice is optimal
    for the summed score: only the top n of every block are eligible, then the top ``keep``
    eligible scores win. Ties go to the lower column index.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D (h, d) array, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    h, d = scores.shape
    _check_keep_and_block(d, keep, block)
    order = np.argsort(-scores, axis=1, kind="stable")
    if block is not None:
        n, m = block
        within = np.argsort(-scores.reshape(h, d // m, m), axis=2, kind="stable")
        eligible = np.zeros((h, d // m, m), dtype=bool)
        np.put_along_axis(eligible, within[:, :, :n], True, axis=2)
        eligible_in_order = np.take_along_axis(eligible.reshape(h, d), order, axis=1)
        # A stable sort on "not eligible" moves the eligible columns first, keeping score order.
        order = np.take_along_axis(
            order, np.argsort(~eligible_in_order, axis=1, kind="stable"), axis=1
        )
    mask = np.zeros((h, d), dtype=bool)
    np.put_along_axis(mask, order[:, :keep], True, axis=1)
    return mask


def check_mask(mask: np.ndarray, keep: int, block: tuple[int, int] | None = None) -> None:
    """Raise ValueError unless ``mask`` keeps exactly ``keep`` per row and respects ``block``."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} of shape {mask.shape}")
    h, d = mask.shape
    _check_keep_and_block(d, keep, block)
    counts = mask.sum(axis=1)
    if np.any(counts != keep):
        raise ValueError(f"mask keeps {sorted(set(counts.tolist()))} weights per row, not {keep}")
    if block is not None:
        n, m = block
        if np.any(mask.reshape(h, d // m, m).sum(axis=2) > n):
            raise ValueError(f"mask keeps more than {n} weights in some block of {m}")


# --------------------------------------------------------------------------- saliencies


def _check_hessian(W1: np.ndarray, H: np.ndarray, name: str) -> None:
    size = W1.size
    if H.shape != (size, size):
        raise ValueError(f"{name} has shape {H.shape} but W1 needs ({size}, {size})")


def magnitude_scores(W1: np.ndarray) -> np.ndarray:
    """Magnitude pruning saliency |w| (Han et al. 2015)."""
    return np.abs(np.asarray(W1, dtype=np.float64))


def obd_scores(W1: np.ndarray, H: np.ndarray) -> np.ndarray:
    """OBD saliency ½ H_kk w_k², the loss increase of removing w_k alone, shaped like W1."""
    W1 = np.asarray(W1, dtype=np.float64)
    _check_hessian(W1, H, "H")
    return 0.5 * np.diag(H).reshape(W1.shape) * W1**2


def damped_inverse(H: np.ndarray, damping: float) -> np.ndarray:
    """Inverse of ``H + damping * mean(diag H) * I`` (symmetric, float64).

    Cholesky-based; if the damped matrix is not positive definite, an eigendecomposition
    pseudo-inverse is returned instead and a warning is logged.
    """
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix, got shape {H.shape}")
    if damping < 0:
        raise ValueError(f"damping must be non-negative, got {damping}")
    damped = H + damping * np.mean(np.diag(H)) * np.eye(H.shape[0])
    try:
        factor = scipy.linalg.cho_factor(damped, lower=True, overwrite_a=False)
    except np.linalg.LinAlgError:
        log.warning(
            "damped Hessian (damping %g) is not positive definite; using a pseudo-inverse",
            damping,
        )
        return _pseudo_inverse(damped)
    inverse = scipy.linalg.cho_solve(factor, np.eye(H.shape[0]), overwrite_b=True)
    return (inverse + inverse.T) / 2


def _pseudo_inverse(matrix: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse of a symmetric matrix from its eigendecomposition."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    cutoff = np.max(np.abs(values), initial=0.0) * matrix.shape[0] * np.finfo(np.float64).eps
    inverted = np.zeros_like(values)
    significant = np.abs(values) > cutoff
    inverted[significant] = 1.0 / values[significant]
    inverse = (vectors * inverted) @ vectors.T
    return (inverse + inverse.T) / 2


def obs_scores(W1: np.ndarray, H_inv: np.ndarray) -> np.ndarray:
    """OBS saliency w_k² / (2 [H⁻¹]_kk), the loss increase of removing w_k with compensation."""
    W1 = np.asarray(W1, dtype=np.float64)
    _check_hessian(W1, H_inv, "H_inv")
    diagonal = np.diag(H_inv)
    if np.any(diagonal <= 0):
        raise ValueError("H_inv has non-positive diagonal entries; use a damped inverse")
    return W1**2 / (2.0 * diagonal.reshape(W1.shape))


# --------------------------------------------------------------------------- updates


def obs_update(W1: np.ndarray, H_inv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Joint OBS compensation for all pruned weights S (mask False) of the flattened W1.

    Δw = -H⁻¹[:, S] (H⁻¹[S, S])⁻¹ w_S minimises ½ Δwᵀ H Δw subject to Δw_S = -w_S. It is
    applied once; the pruned entries, zero up to rounding, are then set to exactly 0.
    """
    W1 = np.asarray(W1, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != W1.shape:
        raise ValueError(f"mask has shape {mask.shape} but W1 has {W1.shape}")
    _check_hessian(W1, H_inv, "H_inv")
    weights = W1.reshape(-1).copy()
    pruned = np.flatnonzero(~mask.reshape(-1))
    if pruned.size == 0:
        return weights.reshape(W1.shape)
    block = H_inv[np.ix_(pruned, pruned)]
    try:
        factor = scipy.linalg.cho_factor(block, lower=True)
        multipliers = scipy.linalg.cho_solve(factor, weights[pruned])
    except np.linalg.LinAlgError:
        log.warning("H_inv restricted to the pruned weights is singular; using least squares")
        multipliers = np.linalg.lstsq(block, weights[pruned], rcond=None)[0]
    weights -= H_inv[:, pruned] @ multipliers
    weights[pruned] = 0.0
    return weights.reshape(W1.shape)


def quadratic_increase(W1: np.ndarray, W1_new: np.ndarray, H: np.ndarray) -> float:
    """Second-order loss increase ½ Δwᵀ H Δw of moving from ``W1`` to ``W1_new``."""
    W1 = np.asarray(W1, dtype=np.float64)
    W1_new = np.asarray(W1_new, dtype=np.float64)
    if W1_new.shape != W1.shape:
        raise ValueError(f"W1_new has shape {W1_new.shape} but W1 has {W1.shape}")
    _check_hessian(W1, H, "H")
    delta = (W1_new - W1).reshape(-1)
    return float(0.5 * delta @ H @ delta)


def relative_divergence(new: np.ndarray, reference: np.ndarray) -> float:
    """Relative Frobenius distance ‖new - reference‖_F / ‖reference‖_F."""
    new = np.asarray(new, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if new.shape != reference.shape:
        raise ValueError(f"new has shape {new.shape} but reference has {reference.shape}")
    scale = np.linalg.norm(reference)
    if scale == 0:
        raise ValueError("reference is all zeros, so the relative divergence is undefined")
    return float(np.linalg.norm(new - reference) / scale)


# --------------------------------------------------------------------------- methods


def _require(method: str, **inputs) -> None:
    missing = [name for name, value in inputs.items() if value is None]
    if missing:
        raise ValueError(f"method {method!r} needs {' and '.join(missing)}")


def prune_w1(
    method: str,
    W1: np.ndarray,
    *,
    keep: int,
    block: tuple[int, int] | None = None,
    H: np.ndarray | None = None,
    H_inv: np.ndarray | None = None,
    mip_mask: np.ndarray | None = None,
    mip_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Prune W1 with one of ``METHODS``; returns (pruned weights, bool keep-mask) like W1.

    ``H`` is the loss Hessian (for "obd"), ``H_inv`` its (damped) inverse (for "obs",
    "obs_mask", "flo"); ``mip_mask`` and ``mip_weights`` come from the MIP oracle. Every mask
    keeps exactly ``keep`` weights per row and at most n per m columns with ``block=(n, m)``;
    weights outside the mask are exactly 0.
    """
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; known methods are {METHODS}")
    W1 = np.asarray(W1, dtype=np.float64)
    if W1.ndim != 2:
        raise ValueError(f"W1 must be a 2-D (h, d) array, got shape {W1.shape}")

    if method == "mp":
        mask = select_mask(magnitude_scores(W1), keep, block)
        return np.where(mask, W1, 0.0), mask
    if method == "obd":
        _require(method, H=H)
        mask = select_mask(obd_scores(W1, H), keep, block)
        return np.where(mask, W1, 0.0), mask
    if method in ("obs", "obs_mask"):
        _require(method, H_inv=H_inv)
        mask = select_mask(obs_scores(W1, H_inv), keep, block)
        weights = obs_update(W1, H_inv, mask) if method == "obs" else np.where(mask, W1, 0.0)
        return weights, mask

    if method == "mip":
        _require(method, mip_mask=mip_mask, mip_weights=mip_weights)
    elif method == "flo":
        _require(method, mip_mask=mip_mask, H_inv=H_inv)
    else:
        _require(method, mip_mask=mip_mask)
    mask = np.asarray(mip_mask)
    if mask.shape != W1.shape:
        raise ValueError(f"mip_mask has shape {mask.shape} but W1 has {W1.shape}")
    check_mask(mask, keep, block)
    if method == "mip":
        mip_weights = np.asarray(mip_weights, dtype=np.float64)
        if mip_weights.shape != W1.shape:
            raise ValueError(f"mip_weights has shape {mip_weights.shape} but W1 has {W1.shape}")
        # Solver round-off can leave tiny values off the support; the mask is authoritative.
        return np.where(mask, mip_weights, 0.0), mask.copy()
    if method == "flo":
        return obs_update(W1, H_inv, mask), mask.copy()
    return np.where(mask, W1, 0.0), mask.copy()
