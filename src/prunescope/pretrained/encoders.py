"""The SAEs as modules: ``PretrainedSAE``'s interface, the linear ``DictionarySAE`` every
foreign layout loads into, prunescope's own ``PrunescopeSAE``, and the activations they use."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prunescope.pretrained.source import SAESource
from prunescope.sae import TopKSAE, row_top_k
from prunescope.survival import as_latent_encoder


@dataclass(frozen=True)
class Encoding:
    """How latents come from activations, besides the weights.

    ``activation``: "relu", "jumprelu" (needs a threshold), "topk" or "groupmax" (need k).
    ``subtract_b_dec``: the input minus ``b_dec`` is encoded (SAELens apply_b_dec_to_input,
    sparsify). ``row_norm``: SAELens' per-row input normalisation, "none",
    "constant_norm_rescale" or "layer_norm". ``rescale_by_decoder_norm``: SAELens TopK
    multiplies pre-activations by the decoder row norms before choosing the top k.
    """

    activation: str
    k: int | None = None
    subtract_b_dec: bool = False
    row_norm: str = "none"
    rescale_by_decoder_norm: bool = False


class PretrainedSAE(nn.Module):
    """An SAE read from files: ``d_model``, ``d_sae``, ``encode``, ``decode``, ``reconstruct``,
    its ``format`` (one of ``FORMATS``), ``source`` and what its config says about it
    (``info``: hook, model, ...). ``encode`` satisfies ``survival.LatentEncoder``."""

    def __init__(self, fmt: str, source: SAESource, d_model: int, d_sae: int, info: dict):
        super().__init__()
        self.format, self.source = fmt, source
        self.d_model, self.d_sae = d_model, d_sae
        self.info = info

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense non-negative float32 ``(rows, d_sae)`` latents of raw activations ``x``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Activations reconstructed from latents ``z``."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def encode_and_reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents of ``x`` and its reconstruction, encoding once."""
        z = self.encode(x)
        return z, self.decode(z)

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    def provenance(self) -> dict:
        """JSON-ready: format, widths, where the files came from and what the config says."""
        return {
            "format": self.format,
            "d_model": self.d_model,
            "d_sae": self.d_sae,
            **self.source.to_dict(),
            **self.info,
        }

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as float32 on the SAE's device, once its width is checked."""
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"activations of width {x.shape[-1]} given to the SAE {self.source.describe()}"
                f", which reads activations of width d_model={self.d_model}"
            )
        return x.to(device=self.device, dtype=torch.float32)


class DictionarySAE(PretrainedSAE):
    """A linear encoder and decoder with one of the activations ``Encoding`` names:
    ``pre = (x' - b_dec if subtract_b_dec) @ W_enc + b_enc`` with ``x'`` the row-normalised
    input, latents ``activation(pre)``, reconstruction ``z @ W_dec + b_dec`` un-normalised.

    Weights are float32 buffers ``W_enc (d_model, d_sae)``, ``W_dec (d_sae, d_model)``,
    ``b_enc``, ``b_dec`` and, for JumpReLU, ``threshold``.
    """

    def __init__(self, fmt, source, tensors: dict[str, torch.Tensor], encoding, info, device):
        d_model, d_sae = tensors["W_enc"].shape
        super().__init__(fmt, source, int(d_model), int(d_sae), info)
        self.encoding = encoding
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor.to(device=device, dtype=torch.float32))
        if encoding.rescale_by_decoder_norm:
            self.register_buffer("decoder_norms", self.W_dec.norm(dim=-1))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        normalised, _ = normalise_rows(self._inputs(x), self.encoding.row_norm)
        return self._latents(normalised)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.encoding.row_norm != "none":
            raise ValueError(
                f"the SAE {self.source.describe()} normalises each input row "
                f"({self.encoding.row_norm}), so latents alone do not give back the "
                "activations; use reconstruct(x)"
            )
        return self._decode_normalised(z.to(device=self.device, dtype=torch.float32))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_and_reconstruct(x)[1]

    @torch.no_grad()
    def encode_and_reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalised, undo = normalise_rows(self._inputs(x), self.encoding.row_norm)
        z = self._latents(normalised)
        return z, undo(self._decode_normalised(z))

    def _latents(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding.subtract_b_dec:
            x = x - self.b_dec
        pre = x @ self.W_enc + self.b_enc
        if self.encoding.rescale_by_decoder_norm:
            pre = pre * self.decoder_norms
        return activate(pre, self.encoding, getattr(self, "threshold", None))

    def _decode_normalised(self, z: torch.Tensor) -> torch.Tensor:
        if self.encoding.rescale_by_decoder_norm:
            z = z / self.decoder_norms
        return z @ self.W_dec + self.b_dec


class PrunescopeSAE(PretrainedSAE):
    """prunescope's own ``TopKSAE`` (its mean/std normalisation included) behind the same
    interface; ``encode`` is ``survival.as_latent_encoder``'s dense top-k code."""

    def __init__(self, sae: TopKSAE, source: SAESource, info: dict):
        super().__init__("prunescope", source, sae.d_model, sae.d_sae, info)
        self.sae = sae
        self.latents = as_latent_encoder(sae)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.latents.encode(self._inputs(x))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(device=self.device, dtype=torch.float32)
        return self.sae.denormalise(z @ self.sae.W_dec + self.sae.b_dec)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae(self._inputs(x)).x_rec


def activate(pre: torch.Tensor, encoding: Encoding, threshold: torch.Tensor | None):
    """Latents from pre-activations, as ``encoding.activation`` says."""
    if encoding.activation == "relu":
        return torch.relu(pre)
    if encoding.activation == "jumprelu":
        return jump_relu(pre, threshold)
    if encoding.activation == "topk":
        return top_k_relu(pre, encoding.k)
    if encoding.activation == "groupmax":
        return group_max_relu(pre, encoding.k)
    raise ValueError(f"unknown SAE activation {encoding.activation!r}")


def jump_relu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``pre`` where it exceeds the threshold strictly, else 0.

    Written ``relu(pre) * (pre > threshold)`` as SAELens and Google's Gemma Scope reference
    do: for the non-negative thresholds JumpReLU training produces it equals
    ``pre * (pre > threshold)``, and it keeps latents non-negative should one be negative.
    """
    return torch.relu(pre) * (pre > threshold)


def top_k_relu(pre: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest pre-activations of each row, ReLU-ed, and 0 elsewhere.

    SAELens takes the top k of ``pre`` then applies ReLU; sparsify applies ReLU then takes
    the top k. Both keep every positive entry among the k largest and zero the rest, so
    the dense latents are the same.
    """
    rows = pre.reshape(-1, pre.shape[-1])
    values, indices = row_top_k(rows, k)  # the SAE's own top-k: topk's values, faster on CPU
    return torch.zeros_like(rows).scatter_(-1, indices, torch.relu(values)).view_as(pre)


def group_max_relu(pre: torch.Tensor, k: int) -> torch.Tensor:
    """sparsify's "groupmax": the latents split into k equal contiguous groups, and the
    largest ReLU-ed pre-activation of each group kept."""
    values, within = torch.relu(pre).unflatten(-1, (k, -1)).max(dim=-1)
    group_size = pre.shape[-1] // k
    offsets = torch.arange(k, device=pre.device) * group_size
    return torch.zeros_like(pre).scatter_(-1, within + offsets, values)


def normalise_rows(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, Callable]:
    """SAELens' run-time input normalisation of each row and the function that undoes it
    on a reconstruction (``constant_norm_rescale``: norm sqrt(d_in); ``layer_norm``:
    mean 0, unbiased std 1 with eps 1e-5 added to the std, undone without the eps)."""
    if mode == "none":
        return x, lambda y: y
    if mode == "constant_norm_rescale":
        coefficient = math.sqrt(x.shape[-1]) / x.norm(dim=-1, keepdim=True)
        return x * coefficient, lambda y: y / coefficient
    if mode == "layer_norm":
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        std = centred.std(dim=-1, keepdim=True)
        return centred / (std + 1e-5), lambda y: y * std + mean
    raise ValueError(f"unknown row normalisation {mode!r}")
