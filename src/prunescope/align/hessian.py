"""Exact Hessian of the mean cross-entropy loss with respect to W1 (paper appendix A.3).

For the single net z = W2 @ relu(W1 @ (C0 @ x) + b1) + b2 the logits are piecewise linear
in W1 (ReLU'' = 0 almost everywhere), so the exact Hessian equals its Gauss-Newton form

    H = (1/n) sum_n J_n^T (diag p_n - p_n p_n^T) J_n,   J_n = (W2 diag(relu'(a_n))) kron x'_n^T,

with x' = C0 x and p_n = softmax(z_n). It does not depend on the labels. Writing
diag p - p p^T = sum_c p_c (e_c - p)(e_c - p)^T turns H into G^T G / n with one row of G per
(sample, class):  G[n, c, i*d + j] = sqrt(p_c) * ((e_c - p)^T W2 D_n)[i] * x'_n[j].
G^T G is accumulated over chunks of samples in float64 torch matmuls.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _as_float64(array, device: str, name: str) -> Tensor:
    try:
        return torch.as_tensor(array, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} cannot be read as a float64 array: {error}") from error


def _check_shapes(C0: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, x: Tensor) -> None:
    if W1.ndim != 2 or C0.ndim != 2 or W2.ndim != 2 or x.ndim != 2:
        raise ValueError("C0, W1, W2 and x must be 2-D arrays (x is samples by inputs)")
    h, d = W1.shape
    if C0.shape[0] != d:
        raise ValueError(f"C0 has {C0.shape[0]} rows but W1 has {d} columns")
    if x.shape[1] != C0.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but C0 has {C0.shape[1]} columns")
    if b1.shape != (h,):
        raise ValueError(f"b1 has shape {tuple(b1.shape)} but W1 has {h} rows")
    if W2.shape[1] != h:
        raise ValueError(f"W2 has {W2.shape[1]} columns but W1 has {h} rows")
    if b2.shape != (W2.shape[0],):
        raise ValueError(f"b2 has shape {tuple(b2.shape)} but W2 has {W2.shape[0]} rows")
    if x.shape[0] < 1:
        raise ValueError("x holds no samples")


def _gauss_newton_factor(
    features: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor
) -> Tensor:
    """Rows of G for a chunk: (samples * classes, h * d), so that G^T G sums the chunk's terms."""
    pre = features @ W1.T + b1
    active = (pre > 0).to(features.dtype)  # relu'(0) = 0, as torch's autograd takes it
    probs = torch.softmax(torch.relu(pre) @ W2.T + b2, dim=1)
    # (e_c - p)^T W2 = W2[c] - p^T W2, one row per class c, then masked by the active units.
    back = (W2.unsqueeze(0) - (probs @ W2).unsqueeze(1)) * active.unsqueeze(1)
    back = back * probs.sqrt().unsqueeze(2)
    rows = back.unsqueeze(3) * features.unsqueeze(1).unsqueeze(2)
    return rows.reshape(-1, W1.shape[0] * W1.shape[1])


def w1_hessian(C0, W1, b1, W2, b2, x, *, chunk: int = 2048, device: str = "cpu") -> np.ndarray:
    """Exact Hessian of the mean cross-entropy loss over the samples ``x`` (n, d_in) w.r.t. W1.

    Returns a symmetric float64 array of shape (h*d, h*d) whose flat index i*d + j is W1[i, j]
    (row-major, ``W1.reshape(-1)``). ``chunk`` samples are processed at a time; one chunk holds
    chunk * C * h * d float64 numbers, so lower it for wide nets. ``device`` is a torch device
    ("cpu", "cuda", ...); the result always comes back as a numpy array.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of samples, got {chunk}")
    C0, W1, b1, W2, b2, x = (
        _as_float64(value, device, name)
        for value, name in zip(
            (C0, W1, b1, W2, b2, x), ("C0", "W1", "b1", "W2", "b2", "x"), strict=True
        )
    )
    _check_shapes(C0, W1, b1, W2, b2, x)
    size = W1.shape[0] * W1.shape[1]
    hessian = torch.zeros(size, size, dtype=torch.float64, device=device)
    features = x @ C0.T
    for start in range(0, features.shape[0], chunk):
        rows = _gauss_newton_factor(features[start : start + chunk], W1, b1, W2, b2)
        hessian.addmm_(rows.T, rows)
    hessian /= features.shape[0]
    # Blocked matmuls are symmetric only up to rounding; averaging makes it exact.
    hessian = (hessian + hessian.T) / 2
    return hessian.cpu().numpy()


def hessian_sample(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``round(fraction * n)`` of ``n`` samples.

    At least one sample is always drawn; ``fraction == 1.0`` returns all indices in order
    (the paper uses 10% of the training set for the Boolean task and all of it for Digits).
    """
    if n < 1:
        raise ValueError(f"need at least one sample to draw from, got n={n}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(n)
    count = max(1, int(round(fraction * n)))
    chosen = np.random.default_rng(seed).choice(n, size=count, replace=False)
    return np.sort(chosen)
