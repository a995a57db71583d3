"""The training run of a TopK SAE on an activation cache: optimiser, schedule, loop."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from prunescope.activations import CACHE, check_capture_settings, read_cache_info
from prunescope.artifacts import damaged, nan_or_inf, open_hdf5
from prunescope.io import atomic_path, write_json
from prunescope.models import pick_device
from prunescope.sae.evaluate import evaluate_sae
from prunescope.sae.gradients import StepOutput, loss_and_gradients
from prunescope.sae.io import check_sae_folder, save_sae
from prunescope.sae.model import TopKSAE
from prunescope.sae.resample import RESAMPLE_UNTIL, resample_dead_features
from prunescope.sae.stream import iter_shuffled_batches
from prunescope.settings import SAEConfig


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


def lr_factor(step: int, warmup_steps: int, steps: int) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine annealing to 0 at ``steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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
    check_sae_folder(out_dir)
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
