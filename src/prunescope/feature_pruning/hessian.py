"""The feature Hessian of a projection and its blend with the calibration Hessian.

SparseGPT prunes ``W`` to keep ``||(W - W') X||^2`` small, whose Hessian is
``H_X = 2/n X^T X`` over calibration inputs. Feature-aware pruning keeps instead
``sum_i w_i ||(W - W') u_i||^2`` small, the change in what the projection computes on each
SAE feature direction ``u_i`` as it sees them, whose Hessian is
``H_F = sum_i w_i u_i u_i^T``. With energy weights and uncorrelated features it approximates
the part of ``H_X`` the SAE's codes carry; it leaves out what no feature carries (the
stream's mean and the SAE's decoder bias as the projection sees them, and the
reconstruction error). With uniform weights every alive feature has weight one.
OBS mask selection and updates do not change when a Hessian is scaled, so the hybrid adds
the two after scaling each to unit trace.
"""

from __future__ import annotations

import torch
from torch import Tensor


def feature_hessian(directions: Tensor, weights: Tensor) -> Tensor:
    """``sum_i weights[i] * outer(directions[i], directions[i])`` in float64."""
    if directions.ndim != 2 or weights.shape != (directions.shape[0],):
        raise ValueError(
            f"directions must be [n, d] and weights [n], got {tuple(directions.shape)} and "
            f"{tuple(weights.shape)}"
        )
    if (weights < 0).any():
        raise ValueError("feature weights must not be negative")
    u = directions.double()
    return (u.t() * weights.double().to(u.device)) @ u


def hybrid_hessian(calibration: Tensor, feature: Tensor, lam: float) -> Tensor:
    """``H_X / tr(H_X) + lam * H_F / tr(H_F)``: calibration and features in a set ratio."""
    if lam < 0:
        raise ValueError(f"the hybrid's lambda {lam} must not be negative")
    h_x, h_f = calibration.double(), feature.double().to(calibration.device)
    return h_x / _trace(h_x, "calibration") + lam * h_f / _trace(h_f, "feature")


def _trace(hessian: Tensor, what: str) -> Tensor:
    trace = torch.trace(hessian)
    if not trace > 0:
        raise ValueError(f"the {what} Hessian has trace {float(trace)}: nothing to prune by")
    return trace
