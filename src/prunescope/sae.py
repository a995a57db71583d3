"""TopK sparse autoencoders on cached residual-stream activations (paper section 3.2).

The SAE works on per-dimension standardised activations ``x_hat = (x - mean) / std``
(statistics from the activation cache), keeps the k largest encoder pre-activations
and reconstructs with a unit-norm decoder. Training streams the cache from disk
through a shuffled buffer, so a cache larger than memory trains the same way.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from prunescope.activations import (
    CACHE,
    check_capture_settings,
    read_cache_info,
    require_finite_rows,
)
from prunescope.artifacts import damaged, nan_or_inf, open_hdf5, read_safetensors, require_file
from prunescope.errors import UserInputError
from prunescope.io import atomic_path, read_json, write_json
from prunescope.models import pick_device

NORMALISATION = (
    "x_hat = (x - mean) / std per dimension, mean/std (float64, from the activation cache) "
    "stored in sae.safetensors; encode/decode work on x_hat, x_rec = x_hat_rec * std + mean"
)
RESAMPLE_UNTIL = 0.8
"""Fraction of training after which dead features are no longer resampled, so the
final dictionary has been trained without disruption."""


@dataclass
class SAEConfig:
    """Hyperparameters of one TopK SAE run; defaults follow paper section 3.2."""

    expansion: int = 8
    """Dictionary size as a multiple of the model width: d_sae = expansion * d_model."""
    k: int = 64
    """Number of latents kept per token by the TopK activation."""
    lr: float = 5e-5
    """Peak Adam learning rate, reached after warmup and annealed to 0 by a cosine."""
    steps: int = 20_000
    """Number of optimiser steps (batches) to train for."""
    batch_size: int = 4096
    """Tokens (activation rows) per optimiser step."""
    resample_every: int = 2000
    """Resample dead features every this many steps; 0 disables resampling."""
    dead_window: int | None = None
    """A feature that has not fired for this many steps counts as dead; None means
    resample_every, so a feature gets one full resampling period to fire."""
    warmup_steps: int = 100
    """Linear learning-rate warmup before the cosine, to keep the first Adam steps small."""
    seed: int = 0
    """Seed of the decoder initialisation, data order and resampling draws."""
    eval_batch_size: int = 8192
    """Rows per batch when evaluating on the held-out split (memory only, not results)."""
    log_every: int = 100
    """Record loss and batch FVU in the loss curve every this many steps."""
    buffer_rows: int = 131_072
    """Rows of the shuffle buffer read from the cache at a time (random contiguous
    blocks, shuffled together); bounds host memory and sets how well batches mix."""

    def __post_init__(self) -> None:
        if self.dead_window is None:
            self.dead_window = self.resample_every
        counts = ("expansion", "k", "steps", "batch_size", "eval_batch_size", "log_every")
        at_least = {name: 1 for name in (*counts, "buffer_rows")}
        at_least |= {"resample_every": 0, "dead_window": 0, "warmup_steps": 0, "seed": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SAE config {name}={value!r} must be an integer >= {low}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"SAE config lr={self.lr!r} must be a positive number")
        if self.resample_every > 0 and self.dead_window < 1:
            raise ValueError("SAE config dead_window must be >= 1 when resampling is enabled")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"SAE config warmup_steps={self.warmup_steps} must be below steps={self.steps}"
            )


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


def make_optimizer(sae: TopKSAE, lr: float) -> torch.optim.Adam:
    """Adam over all SAE parameters; the fused kernel (one pass over each tensor) where
    this torch build has it for the SAE's device."""
    try:
        return torch.optim.Adam(sae.parameters(), lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(sae.parameters(), lr=lr)


def optimisation_step(sae: TopKSAE, optimizer: torch.optim.Optimizer, x_hat) -> StepOutput:
    """One Adam step on a batch of normalised activations, keeping decoder rows unit-norm."""
    out = loss_and_gradients(sae, x_hat)
    sae.remove_parallel_decoder_grad()
    optimizer.step()
    sae.normalise_decoder()
    return out


def _set_grad(param: nn.Parameter, grad: torch.Tensor) -> None:
    param.grad = grad.to(param.dtype)


def project_out_parallel(grad: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``grad`` minus, row by row, its component along the unit-norm ``rows``."""
    return grad - (grad * rows).sum(dim=-1, keepdim=True) * rows


def lr_factor(step: int, warmup_steps: int, steps: int) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine annealing to 0 at ``steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def iter_shuffled_batches(
    rows, batch_size: int, buffer_rows: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    """Endless batches of ``rows`` (an HDF5 dataset or array), never loading all of it.

    Each epoch visits chunk-aligned contiguous blocks in a random order; a buffer of about
    ``buffer_rows`` rows from several blocks is shuffled and cut into batches, and the
    rows left over join the next buffer, so every row is used once per epoch.
    """
    n_rows = rows.shape[0]
    chunks = getattr(rows, "chunks", None)
    chunk = chunks[0] if chunks else 4096
    block = chunk * max(1, math.ceil(1024 / chunk))
    n_blocks = math.ceil(n_rows / block)
    blocks_per_buffer = max(1, buffer_rows // block)
    leftover = torch.empty(0, rows.shape[1], device=device)
    while True:
        order = torch.randperm(n_blocks, generator=generator).tolist()
        for first in range(0, n_blocks, blocks_per_buffer):
            chosen = sorted(order[first : first + blocks_per_buffer])
            parts = [np.asarray(rows[b * block : min(n_rows, (b + 1) * block)]) for b in chosen]
            fresh = torch.from_numpy(np.concatenate(parts)).to(device, torch.float32)
            buffer = torch.cat([leftover, fresh])
            buffer = buffer[torch.randperm(len(buffer), generator=generator).to(device)]
            n_full = len(buffer) // batch_size * batch_size
            for start in range(0, n_full, batch_size):
                yield buffer[start : start + batch_size]
            leftover = buffer[n_full:]


RESAMPLE_CHUNK = 4096
"""Rows whose (rows, d_sae) pre-activations a resampling holds at once."""


@torch.no_grad()
def resample_dead_features(
    sae: TopKSAE,
    optimizer: torch.optim.Optimizer,
    dead: torch.Tensor,
    x_hat: torch.Tensor,
    generator: torch.Generator,
) -> int:
    """Re-initialise ``dead`` latents towards inputs the SAE reconstructs badly.

    Each dead latent takes an input drawn with probability proportional to its squared
    error, among inputs whose residual points along the input (else the latent could not
    be selected there); its decoder row is the unit residual direction, its encoder row
    the same direction, its bias 0, and its Adam moments are zeroed. The encoder norm is
    the smallest that lifts the latent into its input's top-k, clamped to 0.2-4 x the
    mean alive encoder norm: a TopK latent gets no gradient until it is selected, so a
    resampled latent at the usual small norm (0.2, made for ReLU SAEs) would stay dead.
    A few rounds then raise the norms of latents crowded out of their input's top-k by
    other resampled latents with similar directions.
    """
    dead_ids = dead.nonzero().squeeze(-1)
    n_dead = len(dead_ids)
    if n_dead == 0:
        return 0
    residual, kth = [], []
    for rows in x_hat.split(4096):
        top = sae.pre_activations(rows).topk(sae.k, dim=-1)
        residual.append(rows - sae.decode(F.relu(top.values), top.indices))
        kth.append(top.values[:, -1].clamp_min(0))
    residual, kth = torch.cat(residual), torch.cat(kth)
    error = residual.pow(2).sum(-1)
    projection = (residual * x_hat).sum(-1) / error.sqrt().clamp_min(1e-12)

    error_cpu = error.double().cpu()
    weights = error_cpu * (projection > 0).cpu()
    if weights.sum() == 0:
        weights = error_cpu if error_cpu.sum() > 0 else torch.ones_like(error_cpu)
    replace = n_dead > int((weights > 0).sum())
    pick = torch.multinomial(weights, n_dead, replacement=replace, generator=generator)
    pick = pick.to(x_hat.device)
    directions = residual[pick] / error[pick].sqrt().clamp_min(1e-12)[:, None]

    alive_norms = sae.W_enc[~dead].norm(dim=-1)
    mean_alive = float(alive_norms.mean()) if len(alive_norms) else 1.0
    needed = 1.05 * kth[pick] / projection[pick].clamp_min(1e-12)
    norms = needed.masked_fill(projection[pick] <= 0, 0).clamp(0.2 * mean_alive, 4 * mean_alive)

    sae.W_dec[dead_ids] = directions
    sae.W_enc[dead_ids] = directions * norms[:, None]
    sae.b_enc[dead_ids] = 0.0
    sources = x_hat[pick]
    for _ in range(3):
        own, kth = _own_and_kth(sae, sources, dead_ids)
        crowded = own < kth
        if not crowded.any():
            break
        boosted = (norms * 1.05 * kth / own.clamp_min(1e-12)).clamp(max=4 * mean_alive)
        norms = torch.where(crowded & (own > 0), boosted, norms)
        sae.W_enc[dead_ids] = directions * norms[:, None]
    for param in (sae.W_enc, sae.b_enc, sae.W_dec):
        state = optimizer.state.get(param, {})
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                state[moment][dead_ids] = 0.0
    return n_dead


def _own_and_kth(
    sae: TopKSAE, sources: torch.Tensor, latents: torch.Tensor, chunk: int = RESAMPLE_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per source row i: the pre-activation of ``latents[i]`` and the k-th largest one.

    In chunks of rows, so that when most latents are dead the (n_dead, d_sae)
    pre-activations never exist at once (65,536 latents would make that 17 GB).
    """
    own, kth = [], []
    for start in range(0, len(sources), chunk):
        pre = sae.pre_activations(sources[start : start + chunk])
        rows = torch.arange(len(pre), device=pre.device)
        own.append(pre[rows, latents[start : start + chunk]])
        kth.append(pre.topk(sae.k, dim=-1).values[:, -1])
    return torch.cat(own), torch.cat(kth)


@torch.no_grad()
def evaluate_sae(sae: TopKSAE, rows, batch_size: int, source: str = "activations") -> dict:
    """FVU (original and normalised space), L0 and per-feature firing rate on ``rows``.

    FVU = sum ||x - x_rec||^2 / sum ||x - mean(x)||^2 with the mean of ``rows`` itself, so
    an SAE evaluated on other activations (transfer) is judged against their own variance.
    Sums are float64 over activations centred by the SAE mean, avoiding cancellation.
    """
    device = sae.W_enc.device
    n_rows = rows.shape[0]
    if n_rows == 0:
        raise ValueError(f"{source} has no rows to evaluate on")
    std = sae.std.to(device)
    centred_sum = torch.zeros(sae.d_model, dtype=torch.float64, device=device)
    centred_sumsq = torch.zeros_like(centred_sum)
    error_orig = error_norm = torch.zeros((), dtype=torch.float64, device=device)
    active = torch.zeros((), dtype=torch.float64, device=device)
    fired = torch.zeros(sae.d_sae, dtype=torch.float64, device=device)
    for start in range(0, n_rows, batch_size):
        x = torch.as_tensor(np.asarray(rows[start : start + batch_size])).to(device, torch.float32)
        require_finite_rows(x, start, source)
        out = sae(x)
        diff = (out.x_hat - out.x_hat_rec).double()
        error_norm = error_norm + diff.pow(2).sum()
        error_orig = error_orig + (diff * std).pow(2).sum()
        centred = (x - sae.mean.to(x.dtype)).double()
        centred_sum += centred.sum(0)
        centred_sumsq += centred.pow(2).sum(0)
        on = out.values > 0
        active = active + on.sum()
        fired.index_add_(0, out.indices.flatten(), on.flatten().double())
    variance_per_dim = (centred_sumsq - centred_sum.pow(2) / n_rows).clamp_min(0)
    firing_rate = (fired / n_rows).cpu()
    alive = int((fired > 0).sum())
    return {
        "fvu": float(error_orig / variance_per_dim.sum()),
        "fvu_normalised": float(error_norm / (variance_per_dim / std.pow(2)).sum()),
        "l0": float(active / n_rows),
        "alive": alive,
        "dead": sae.d_sae - alive,
        "d_sae": sae.d_sae,
        "n_eval_tokens": n_rows,
        "firing_rate": firing_rate.tolist(),
    }


def train_sae(
    cache_path,
    cfg: SAEConfig,
    device: torch.device | str,
    out_dir,
    provenance: dict | None = None,
    capture_settings: dict | None = None,
) -> dict:
    """Train a TopK SAE on the ``train`` split of an activation cache, evaluate it on the
    ``eval`` split, and write sae.safetensors, cfg.json and (last) metrics.json to ``out_dir``.
    With ``capture_settings``, a cache captured with other settings is refused first.
    """
    cache_path, out_dir = Path(cache_path), Path(out_dir)
    _check_sae_folder(out_dir)
    device = pick_device(device) if isinstance(device, str) else device
    started = time.perf_counter()
    info = read_cache_info(cache_path)
    if capture_settings is not None:
        check_capture_settings(info, capture_settings)
    mean, std, d_model = _training_stats(info, cache_path, cfg)
    cache_attrs = {key: _jsonable(value) for key, value in info["attrs"].items()}
    activations = f"layer {cache_attrs.get('layer', '?')} activations in {cache_path}"
    # validated just above: open it without reading its metadata a second time
    with open_hdf5(cache_path, CACHE) as cache:
        train_rows, eval_rows = cache["train"], cache["eval"]
        init_seed, data_seed, resample_seed = np.random.SeedSequence(cfg.seed).generate_state(3)
        sae = TopKSAE(
            d_model,
            cfg.expansion * d_model,
            cfg.k,
            mean,
            std,
            generator=torch.Generator().manual_seed(int(init_seed)),
        ).to(device)
        batches = iter_shuffled_batches(
            train_rows,
            cfg.batch_size,
            cfg.buffer_rows,
            torch.Generator().manual_seed(int(data_seed)),
            device,
        )
        resample_gen = torch.Generator().manual_seed(int(resample_seed))
        loss_curve, resampled = _fit(sae, batches, cfg, resample_gen, cache_path, activations)
        sae.eval()
        metrics = evaluate_sae(
            sae, eval_rows, cfg.eval_batch_size, f"the eval split of {activations}"
        )

    metrics = {
        **metrics,
        "loss_curve": loss_curve,
        "resampled": resampled,
        "wall_seconds": time.perf_counter() - started,
    }
    provenance = {**cache_attrs, "cache": str(cache_path), **(provenance or {})}
    # The folder appears whole or not at all: a job killed while writing leaves only
    # <folder>.partial, never weights without metrics for a later run to trip over.
    with atomic_path(out_dir) as staging:
        save_sae(sae, cfg, staging, provenance)
        write_json(staging / "metrics.json", metrics)
    return metrics


def _fit(
    sae: TopKSAE,
    batches: Iterator[torch.Tensor],
    cfg: SAEConfig,
    resample_gen: torch.Generator,
    cache_path: Path,
    activations: str,
) -> tuple[list, list]:
    """The optimisation loop of ``train_sae``; returns (loss curve, resampling log).

    ``activations`` says what is trained on (layer and cache) in a non-finite loss error.
    """
    device = sae.W_enc.device
    optimizer = make_optimizer(sae, cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps)
    )
    since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)
    loss_curve, resampled = [], []
    progress = tqdm(
        range(1, cfg.steps + 1), desc=f"SAE {cache_path.name}", file=sys.stderr, mininterval=10
    )
    recent_losses = torch.zeros(cfg.log_every, device=device)
    for step in progress:
        x_hat = sae.normalise(next(batches))
        out = optimisation_step(sae, optimizer, x_hat)
        scheduler.step()
        # Losses are checked for NaN/Inf once per log interval, not per step, so a GPU is
        # not made to wait for the host after every step.
        recent_losses[(step - 1) % cfg.log_every] = out.loss
        due = cfg.resample_every and step % cfg.resample_every == 0
        if step % cfg.log_every == 0 or step == cfg.steps or due:
            _check_finite(recent_losses, step, cfg, activations)

        fired = torch.zeros(sae.d_sae, device=device).index_add_(
            0, out.indices.flatten(), (out.values > 0).flatten().float()
        )
        since_fired = torch.where(fired > 0, 0, since_fired + 1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            with torch.no_grad():
                total = (x_hat - x_hat.mean(0)).pow(2).sum()
                fvu_batch = float((out.x_hat_rec - x_hat).pow(2).sum() / total)
            loss_value = float(out.loss)
            loss_curve.append([step, loss_value, fvu_batch])
            progress.set_postfix(loss=f"{loss_value:.4g}", fvu=f"{fvu_batch:.3f}")
        if due and step <= RESAMPLE_UNTIL * cfg.steps:
            dead = since_fired >= cfg.dead_window
            n_batches = min(16, max(1, math.ceil(4 * int(dead.sum()) / cfg.batch_size)))
            pool = sae.normalise(torch.cat([next(batches) for _ in range(n_batches)]))
            count = resample_dead_features(sae, optimizer, dead, pool, resample_gen)
            since_fired[dead] = 0
            resampled.append([step, count])
            tqdm.write(f"step {step}: resampled {count} dead features", file=sys.stderr)
    progress.close()
    return loss_curve, resampled


def _check_finite(recent_losses: torch.Tensor, step: int, cfg: SAEConfig, activations: str) -> None:
    """Raise at the first non-finite loss among the steps since the last check."""
    first = (step - 1) // cfg.log_every * cfg.log_every + 1
    losses = recent_losses[: step - first + 1].cpu()
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        at = first + int(bad[0])
        raise FloatingPointError(
            f"SAE loss is {nan_or_inf(losses[bad[0]])} at step {at} of {cfg.steps} while "
            f"training on {activations}: the activations hold NaN/Inf or the optimisation "
            "diverged"
        )


SAE_FILES = ("sae.safetensors", "cfg.json", "metrics.json")


def _check_sae_folder(out_dir: Path) -> None:
    """Refuse a folder holding anything but an SAE's own files: it is replaced whole."""
    if out_dir.is_dir():
        others = sorted({p.name for p in out_dir.iterdir()} - set(SAE_FILES))
        if others:
            raise ValueError(
                f"SAE folder {out_dir} also holds {others}; train into a new or empty folder"
            )


def save_sae(sae: TopKSAE, cfg: SAEConfig, out_dir, provenance: dict | None = None) -> None:
    """Write ``sae.safetensors`` and ``cfg.json`` into ``out_dir``, each atomically."""
    out_dir = Path(out_dir)
    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.state_dict().items()}
    with atomic_path(out_dir / "sae.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(
        out_dir / "cfg.json",
        {
            **asdict(cfg),
            "d_model": sae.d_model,
            "d_sae": sae.d_sae,
            "normalisation": NORMALISATION,
            "provenance": provenance or {},
        },
    )


def load_sae(directory, device: torch.device | str = "cpu") -> TopKSAE:
    """The SAE saved by ``train_sae``/``save_sae`` in ``directory``.

    A missing, truncated or corrupt ``cfg.json`` or ``sae.safetensors``, or a pair that does
    not belong together, raises an error naming the file, before any tensor is used.
    """
    directory = Path(directory)
    cfg_path = require_file(directory / "cfg.json", "SAE config")
    weights_path = require_file(directory / "sae.safetensors", "SAE weights file")
    cfg = read_json(cfg_path, "SAE config")
    try:
        d_model, d_sae, k = (int(cfg[key]) for key in ("d_model", "d_sae", "k"))
        sae = TopKSAE(d_model, d_sae, k)
    except (KeyError, TypeError, ValueError) as err:
        raise damaged("SAE config", cfg_path, f"lacks a valid d_model/d_sae/k ({err})") from err
    tensors, _ = read_safetensors(weights_path, "SAE weights file")
    expected = {name: tuple(t.shape) for name, t in sae.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if found != expected:
        raise damaged(
            "SAE weights file",
            weights_path,
            f"has tensors {found} but {cfg_path.name} beside it describes {expected}, so "
            "the two do not belong together",
        )
    sae.load_state_dict(tensors)
    return sae.to(torch.device(device)).eval()


def _training_stats(info: dict, cache_path: Path, cfg: SAEConfig):
    """mean, std and d_model of a validated cache (``read_cache_info``), after checking
    that they and its size suit training ``cfg``."""
    d_model = info["d_model"]
    if info["splits"]["train"] < cfg.batch_size:
        raise ValueError(
            f"activation cache {cache_path} has {info['splits']['train']} train rows, "
            f"fewer than batch_size={cfg.batch_size}"
        )
    stats = {}
    for name in ("mean", "std"):
        value = np.asarray(info[name], dtype=np.float64)
        if not np.isfinite(value).all():
            # the capture refuses non-finite rows, so these statistics were damaged later
            raise damaged("activation cache", cache_path, f"has a non-finite {name!r}")
        stats[name] = value
    if (stats["std"] <= 0).any():
        raise ValueError(f"activation cache {cache_path} has a zero std in some dimension")
    if cfg.k > cfg.expansion * d_model:
        raise ValueError(f"SAE config k={cfg.k} exceeds d_sae={cfg.expansion * d_model}")
    return torch.from_numpy(stats["mean"]), torch.from_numpy(stats["std"]), d_model


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = [
    "SAEConfig",
    "SAEOutput",
    "TopKSAE",
    "evaluate_sae",
    "iter_shuffled_batches",
    "load_sae",
    "loss_and_gradients",
    "lr_factor",
    "make_optimizer",
    "optimisation_step",
    "project_out_parallel",
    "resample_dead_features",
    "row_top_k",
    "save_sae",
    "train_sae",
]
