"""Evaluation of an SAE on activation rows: FVU, L0 and per-latent firing rates."""

from __future__ import annotations

import numpy as np
import torch

from prunescope.activations import require_finite_rows
from prunescope.sae.model import TopKSAE


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
