"""What survival needs of an SAE: a ``LatentEncoder`` (its width and a dense, non-negative
encoder), prunescope's ``TopKSAE`` wrapped as one, and ``encode_rows``, which checks every
chunk of latents an encoder returns."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from prunescope.activations import require_finite_rows
from prunescope.sae import TopKSAE


@runtime_checkable
class LatentEncoder(Protocol):
    """What survival needs of an SAE: its width and a dense, non-negative encoder.

    ``encode`` takes activations as the model produced them, ``(rows, d_model)`` float32
    on any device, applies whatever normalisation the SAE was trained with, and returns
    ``(rows, d_sae)`` latent activations (> 0 means the feature fires) on any device.
    A pretrained SAE (Gemma Scope, SAELens, sparsify) plugs in by providing these two.
    """

    d_sae: int

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...


class TopKLatents:
    """prunescope's ``TopKSAE`` as a ``LatentEncoder``: its own top-k code, scattered dense.

    ``TopKSAE.encode`` returns (values, indices) of the k kept latents; this writes them
    into a zero ``(rows, d_sae)`` matrix and changes nothing else about the SAE.
    """

    def __init__(self, sae: TopKSAE):
        self.sae = sae
        self.d_sae = sae.d_sae

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        values, indices = self.sae.encode(x.to(self.sae.W_enc.device))
        dense = torch.zeros(len(values), self.d_sae, dtype=values.dtype, device=values.device)
        return dense.scatter_(1, indices, values)


def as_latent_encoder(sae) -> LatentEncoder:
    """``sae`` as a ``LatentEncoder``; a ``TopKSAE`` is wrapped, since its own ``encode``
    returns the sparse (values, indices) pair and would otherwise pass the protocol check."""
    if isinstance(sae, TopKSAE):
        return TopKLatents(sae)
    if not isinstance(sae, LatentEncoder):
        raise TypeError(f"{type(sae).__name__} is no SAE encoder: it needs d_sae and encode(x)")
    return sae


@torch.no_grad()
def encode_rows(encoder: LatentEncoder, rows: torch.Tensor, start: int, source: str):
    """Latents of ``rows`` (starting at row ``start`` of ``source``), checked."""
    require_finite_rows(rows, start, source)
    latents = encoder.encode(rows)
    if not torch.is_tensor(latents) or tuple(latents.shape) != (len(rows), encoder.d_sae):
        got = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
        raise ValueError(
            f"SAE encoder returned {got} for {len(rows)} rows of {source}; expected a "
            f"({len(rows)}, {encoder.d_sae}) tensor of latent activations"
        )
    # NaN fails the >= test too; firing sets and rates assume activations >= 0
    if not bool((latents >= 0).all()) or not bool(torch.isfinite(latents.max())):
        raise ValueError(
            f"SAE encoder returned negative or non-finite latents on rows {start}.."
            f"{start + len(rows) - 1} of {source}; latent activations must be finite and >= 0"
        )
    # an SAE run in bf16 may return bf16 latents: its own rounding is its own, but sums
    # and cross products over them must not round at bf16 too
    return latents.to(torch.float32)
