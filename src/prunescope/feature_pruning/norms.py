"""How a block's norm turns a direction of the stream into the direction a projection sees.

Every norm here is ``norm(x) = gain * centre(x) / scale(x) + bias``: RMSNorm (``centre`` is
the identity, ``scale`` the root mean square), Gemma's RMSNorm (the same with ``1 + weight``
as its gain) and LayerNorm (``centre`` subtracts the mean, ``scale`` is the standard
deviation). ``gain * centre(.)`` is linear, so a feature that adds ``a * d`` to the stream
adds ``(a / scale(x)) * seen(d)`` to what the projection reads: :func:`seen_directions`
maps ``d`` to ``seen(d)`` and :func:`token_scales` gives ``scale(x)`` per token, which the
basis folds into each feature's energy. :func:`check_norm_map` confirms the decomposition
on real rows, so a norm that computes something else is refused instead of misread.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def _is_layer_norm(norm: nn.Module) -> bool:
    return isinstance(norm, nn.LayerNorm)


def _gain(norm: nn.Module, width: int, device) -> Tensor:
    weight = getattr(norm, "weight", None)
    if weight is None:
        return torch.ones(width, dtype=torch.float64, device=device)
    gain = weight.detach().double().to(device)
    # Gemma's RMSNorm stores its gain as an offset from one: output * (1 + weight)
    return 1 + gain if type(norm).__name__.startswith("Gemma") else gain


def _eps(norm: nn.Module) -> float:
    for name in ("variance_epsilon", "eps", "epsilon"):
        value = getattr(norm, name, None)
        if isinstance(value, int | float):
            return float(value)
    raise TypeError(f"{type(norm).__name__} has no epsilon attribute prunescope knows")


def _centre(norm: nn.Module, x: Tensor) -> Tensor:
    return x - x.mean(-1, keepdim=True) if _is_layer_norm(norm) else x


def seen_directions(norm: nn.Module, directions: Tensor) -> Tensor:
    """``gain * centre(d)`` for each row ``d`` of ``directions`` (float64)."""
    d = directions.double()
    return _gain(norm, d.shape[-1], d.device) * _centre(norm, d)


def token_scales(norm: nn.Module, rows: Tensor) -> Tensor:
    """``scale(x)`` of each row: the root mean square (RMSNorm) or the standard deviation
    (LayerNorm) with the norm's epsilon, by which the norm divides that token."""
    x = _centre(norm, rows.double())
    return torch.sqrt(x.pow(2).mean(-1) + _eps(norm))


def norm_bias(norm: nn.Module, width: int, device) -> Tensor:
    bias = getattr(norm, "bias", None)
    if bias is None:
        return torch.zeros(width, dtype=torch.float64, device=device)
    return bias.detach().double().to(device)


@torch.no_grad()
def check_norm_map(norm: nn.Module, rows: Tensor, where: str) -> None:
    """Refuse a norm whose output on ``rows`` is not ``seen(x) / scale(x) + bias``, to the
    precision of the norm's own dtype."""
    param = next(norm.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    rtol = 1e-3 if dtype == torch.float32 else 3e-2
    actual = norm(rows.to(dtype)).double()
    predicted = seen_directions(norm, rows) / token_scales(norm, rows).unsqueeze(-1)
    predicted = predicted + norm_bias(norm, rows.shape[-1], rows.device)
    error = (actual - predicted).norm() / actual.norm().clamp_min(1e-30)
    if not error <= rtol:
        raise TypeError(
            f"{where}: {type(norm).__name__} does not compute gain * centre(x) / scale(x) + "
            f"bias (relative difference {float(error):.2e}), so prunescope cannot tell which "
            "direction its projections see for an SAE feature"
        )


@torch.no_grad()
def input_second_moment(norm: nn.Module, rows, batch_size: int = 4096) -> Tensor:
    """``E[n n^T]`` over ``rows`` of the stream, ``n`` the norm's output: what the
    projections reading it receive (float64). The calibration Hessian of SparseGPT, up to
    a factor, on these tokens."""
    param = next(norm.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    total = None
    for start in range(0, rows.shape[0], batch_size):
        x = torch.as_tensor(np.asarray(rows[start : start + batch_size])).to(device, dtype)
        seen = norm(x).double()
        moment = seen.t() @ seen
        total = moment if total is None else total + moment
    return total / rows.shape[0]
