"""The training loss of a TopK SAE and its gradients, written out by hand."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.sae.model import TopKSAE


class StepOutput(NamedTuple):
    loss: torch.Tensor
    """Mean over tokens of the squared reconstruction error (a 0-d tensor, not synced)."""
    values: torch.Tensor
    indices: torch.Tensor
    x_hat_rec: torch.Tensor


@torch.no_grad()
def loss_and_gradients(sae: TopKSAE, x_hat: torch.Tensor) -> StepOutput:
    """The training loss on normalised inputs ``x_hat`` and its gradients, written to
    each parameter's ``.grad``, exactly as autograd would give them.

    Written out by hand because autograd cannot see that a TopK SAE is sparse: only k of
    d_sae latents are on per token, so every gradient except the encoder's forward
    matmul touches ``batch * k`` decoder or encoder rows, not ``batch * d_sae``. The
    (token, latent) pairs are grouped by latent once, and each weight gradient is then
    an ``embedding_bag`` over the rows of the batch (a sparse-dense product). Autograd
    would instead backpropagate a dense ``(batch, d_sae)`` gradient through the encoder
    and sort the indices twice.
    """
    batch, k = x_hat.shape[0], sae.k
    values, indices = sae.encode_normalised(x_hat)
    with torch.enable_grad():
        # Autograd only for d loss / d values: embedding_bag's kernel for it forms the k
        # dot products per token without gathering (batch, k, d_model) decoder rows.
        kept = values.requires_grad_()
        decoded = F.embedding_bag(indices, sae.W_dec.detach(), per_sample_weights=kept, mode="sum")
    x_hat_rec = decoded.detach() + sae.b_dec
    error = x_hat_rec - x_hat
    loss = error.pow(2).sum(-1).mean()

    grad_rec = error.mul_(2.0 / batch)
    (grad_values,) = torch.autograd.grad(decoded, kept, grad_rec)
    values = values.detach()
    grad_values.mul_(values > 0)

    latents = indices.reshape(-1)
    order = torch.argsort(latents.to(torch.int32), stable=True)
    bag_sizes = torch.bincount(latents, minlength=sae.d_sae)
    bag_starts = torch.cumsum(bag_sizes, 0) - bag_sizes
    tokens = torch.div(order, k, rounding_mode="floor")

    def per_latent_sum(weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Row ``l``: the sum over pairs (token n, latent l) of weight * rows[n]."""
        return F.embedding_bag(
            tokens, rows, bag_starts, mode="sum", per_sample_weights=weights.reshape(-1)[order]
        )

    _set_grad(sae.W_enc, per_latent_sum(grad_values, x_hat))
    _set_grad(sae.W_dec, per_latent_sum(values, grad_rec))
    _set_grad(
        sae.b_enc, torch.zeros_like(sae.b_enc).index_add_(0, latents, grad_values.reshape(-1))
    )
    _set_grad(sae.b_dec, grad_rec.sum(0))
    return StepOutput(loss, values, indices, x_hat_rec)


def _set_grad(param: nn.Parameter, grad: torch.Tensor) -> None:
    param.grad = grad.to(param.dtype)
