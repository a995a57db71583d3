"""How far pruning moved a projection, measured in weight space and in feature space.

Weight space: ``||W - W'||_F^2 / ||W||_F^2``. Feature space: the same on what the
projection computes on the SAE's feature directions, ``||(W - W') U||_F^2 / ||W U||_F^2``
with ``U`` the alive features as the projection sees them (columns ``u_i``); weighted by
each feature's energy it is ``tr(dW H_F dW^T) / tr(W H_F W^T)`` with the feature Hessian.
The LM analogue of Study ALIGN's C1 divergence, where ``C0`` had to be known.
"""

from __future__ import annotations

from torch import Tensor

from prunescope.feature_pruning.hessian import feature_hessian


def weight_distortion(weight: Tensor, pruned: Tensor) -> float:
    w = weight.double()
    return float((w - pruned.double()).pow(2).sum() / w.pow(2).sum())


def quadratic_distortion(weight: Tensor, pruned: Tensor, hessian: Tensor) -> float:
    """``tr(dW H dW^T) / tr(W H W^T)``, with ``dW = W - W'``."""
    w = weight.double()
    h = hessian.double().to(w.device)
    change = w - pruned.double().to(w.device)
    return float(((change @ h) * change).sum() / ((w @ h) * w).sum())


def feature_distortion(
    weight: Tensor, pruned: Tensor, directions: Tensor, weights: Tensor
) -> float:
    """``sum_i w_i ||dW u_i||^2 / sum_i w_i ||W u_i||^2`` over the rows ``u_i`` of
    ``directions``."""
    return quadratic_distortion(weight, pruned, feature_hessian(directions, weights))
