"""The TopK SAE: normalisation, TopK encoder, sparse decoder, unit-norm decoder rows."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.errors import UserInputError


class SAEOutput(NamedTuple):
    x_rec: torch.Tensor
    """Reconstruction in the original activation space."""
    x_hat_rec: torch.Tensor
    """Reconstruction in the normalised space the SAE is trained in."""
    x_hat: torch.Tensor
    """The normalised input."""
    values: torch.Tensor
    """(batch, k) activations of the kept latents (after ReLU)."""
    indices: torch.Tensor
    """(batch, k) latent indices of the kept latents."""


class TopKSAE(nn.Module):
    """TopK SAE on normalised activations.

    ``z = TopK(W_enc x_hat + b_enc, k)`` keeps the k largest pre-activations and, as in
    OpenAI's TopK SAE (Gao et al. 2024), applies a ReLU to the kept values, so a kept
    latent with a non-positive pre-activation contributes nothing and L0 can fall below k.
    ``x_hat_rec = W_dec^T z + b_dec`` with ``W_dec`` of shape (d_sae, d_model) and
    unit-norm rows (the feature directions compared across dictionaries).
    """

    def __init__(
        self,
        d_model: int,
        d_sae: int,
        k: int,
        mean=None,
        std=None,
        generator: torch.Generator | None = None,
    ):
        """``generator`` draws the initial weights; None leaves them at zero, for loading."""
        super().__init__()
        if not 1 <= k <= d_sae:
            raise UserInputError(
                f"sae.k {k} must lie between 1 and d_sae = sae.expansion × d_model = {d_sae}"
            )
        self.d_model, self.d_sae, self.k = d_model, d_sae, k
        self.W_enc = nn.Parameter(torch.zeros(d_sae, d_model))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_model))
        self.b_dec = nn.Parameter(torch.zeros(d_model))
        mean = torch.zeros(d_model) if mean is None else torch.as_tensor(mean)
        std = torch.ones(d_model) if std is None else torch.as_tensor(std)
        if mean.shape != (d_model,) or std.shape != (d_model,):
            raise ValueError(f"SAE mean/std must have shape ({d_model},)")
        self.register_buffer("mean", mean.to(torch.float64).clone())
        self.register_buffer("std", std.to(torch.float64).clone())
        if generator is not None:
            self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Random unit decoder rows, encoder tied to the decoder, zero biases.

        The tied start makes every latent initially respond to its own direction, which
        keeps most latents alive early; b_dec = 0 because the normalised data has mean 0.
        """
        directions = torch.randn(self.d_sae, self.d_model, generator=generator)
        directions /= directions.norm(dim=-1, keepdim=True)
        self.W_dec.copy_(directions)
        self.W_enc.copy_(directions)
        self.b_enc.zero_()
        self.b_dec.zero_()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """float32 ``(x - mean) / std`` whatever the dtype of ``x`` (e.g. a bf16 model)."""
        x = x.to(self.W_enc.dtype)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def denormalise(self, x_hat: torch.Tensor) -> torch.Tensor:
        return x_hat * self.std.to(x_hat.dtype) + self.mean.to(x_hat.dtype)

    def pre_activations(self, x_hat: torch.Tensor) -> torch.Tensor:
        return F.linear(x_hat, self.W_enc, self.b_enc)

    def encode_normalised(self, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_activations(x_hat)
        values, indices = row_top_k(pre.reshape(-1, self.d_sae), self.k)
        shape = (*pre.shape[:-1], self.k)
        return F.relu(values).reshape(shape), indices.reshape(shape)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, indices) of the top-k latents of original-space activations ``x``."""
        return self.encode_normalised(self.normalise(x))

    def decode(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Normalised-space reconstruction ``W_dec^T z + b_dec`` from the sparse code.

        ``embedding_bag`` sums only the k selected decoder rows per token, so the decoder
        and its gradient cost O(batch * k * d_model) instead of O(batch * d_sae * d_model).
        """
        shape = values.shape
        flat_values, flat_indices = values.reshape(-1, shape[-1]), indices.reshape(-1, shape[-1])
        summed = F.embedding_bag(
            flat_indices, self.W_dec, per_sample_weights=flat_values, mode="sum"
        )
        return (summed + self.b_dec).reshape(*shape[:-1], self.d_model)

    def forward(self, x: torch.Tensor) -> SAEOutput:
        x_hat = self.normalise(x)
        values, indices = self.encode_normalised(x_hat)
        x_hat_rec = self.decode(values, indices)
        return SAEOutput(self.denormalise(x_hat_rec), x_hat_rec, x_hat, values, indices)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Drop the gradient component along each decoder row: with unit-norm rows it only
        changes the norm, which the renormalisation after the step would undo anyway."""
        if self.W_dec.grad is not None:
            self.W_dec.grad.copy_(project_out_parallel(self.W_dec.grad, self.W_dec))


def row_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest entries of each row of a 2-D tensor, unsorted.

    The same values as ``torch.topk``. On CPU, where ``topk`` costs several times the
    encoder matmul, it first picks the k best of the strided column groups
    ``{j, j + m, j + 2m, ...}`` by their maxima, then the k best entries of those
    groups: every entry above the k-th largest group maximum lies in a picked group, so
    nothing of the true top k is lost, and ``topk`` sorts 3/8 as many entries.
    """
    rows, n = scores.shape
    group = next((g for g in (8, 4) if n % g == 0 and n // g >= 2 * k), None)
    if scores.is_cuda or group is None:
        return scores.topk(k, dim=-1, sorted=False)
    per_group = n // group
    strided = scores.view(rows, group, per_group)
    best = strided.amax(1).topk(k, dim=-1, sorted=False).indices
    members = strided.gather(2, best.unsqueeze(1).expand(rows, group, k)).view(rows, group * k)
    values, picked = members.topk(k, dim=-1, sorted=False)
    member, slot = picked.div(k, rounding_mode="floor"), picked.remainder(k)
    return values, best.gather(1, slot) + member * per_group


def project_out_parallel(grad: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``grad`` minus, row by row, its component along the unit-norm ``rows``."""
    return grad - (grad * rows).sum(dim=-1, keepdim=True) * rows
