"""Resampling of dead latents towards the inputs the SAE reconstructs worst."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunescope.sae.model import TopKSAE

RESAMPLE_UNTIL = 0.8
"""Fraction of training after which dead features are no longer resampled, so the
final dictionary has been trained without disruption."""

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
