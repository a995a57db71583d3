"""Single-feature ablation KL (RQ5, paper sections 3.4 and 4.7).

For each SAE feature f, the layer-L residual stream (the output of decoder block L,
``resid_post``) is encoded with the SAE, f's activation is zeroed at every position of
the context, the edited stream replaces the block's output through a forward hook, and
``KL(original || ablated)`` of the next-token distribution at the final position is
averaged over prompts.

The edit, in the SAE's normalised space ``x_hat = (x - mean) / std``: the reconstruction
is ``x_hat_rec = sum_j z_j W_dec[j] + b_dec`` and ``x_rec = x_hat_rec * std + mean``.
Zeroing ``z_f`` (the other kept latents stay as they are; top-k is not re-run, so no
(k+1)-th latent is promoted) lowers ``x_hat_rec`` by ``z_f W_dec[f]`` and therefore
``x_rec`` by exactly ``z_f * (W_dec[f] * std)`` (elementwise product with ``std``; the
mean cancels). ``d_f = W_dec[f] * std`` is f's direction in the model's activation space.

Two injection modes:

- ``error_preserving`` (default): ``x_new = x - z_f d_f``, i.e. ``x_rec_without_f + (x -
  x_rec)``: the SAE's reconstruction error stays in the stream, so only f is removed, and
  a feature that does not fire on a prompt leaves that prompt's output untouched.
- ``reconstruction``: ``x_new = x_rec - z_f d_f``, the reconstruction with f zeroed (the
  paper's wording, "decode back and inject"). KL is still measured against the original,
  un-hooked model, as the paper says "original vs ablated", so every feature's KL also
  contains the cost of replacing x by its reconstruction; that cost alone (no feature
  zeroed) is reported as ``reconstruction_baseline_kl``.

The model runs whole for every ablation (starting at block L + 1 would need each
architecture's rotary embeddings and masks); many (feature, prompt) pairs share one
forward, and only the final position goes through the LM head when the model accepts
``logits_to_keep``.
"""

from __future__ import annotations

import inspect
import sys

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from prunescope.architectures import stream_width
from prunescope.models import check_layer_index, decoder_layers
from prunescope.sae import TopKSAE

MODES = ("error_preserving", "reconstruction")


def feature_directions(sae: TopKSAE, features: torch.Tensor) -> torch.Tensor:
    """``(n, d_model)`` float32 directions ``W_dec[f] * std`` of ``features`` in the
    model's activation space: zeroing ``z_f`` moves the reconstruction by ``-z_f`` times
    this (see the module docstring)."""
    return sae.W_dec.detach()[features].float() * sae.std.float()


def feature_activations(
    values: torch.Tensor, indices: torch.Tensor, features: torch.Tensor, d_sae: int
) -> torch.Tensor:
    """``(..., n)`` activations of ``features`` from a top-k code ``(values, indices)`` of
    shape ``(..., k)``: the kept value where the feature is among the token's top k, else 0.

    ``features`` must not repeat.
    """
    column = torch.full((d_sae,), -1, dtype=torch.long, device=indices.device)
    column[features] = torch.arange(len(features), device=indices.device)
    cols = column[indices]
    kept = cols >= 0
    out = torch.zeros(*values.shape[:-1], len(features) + 1, dtype=torch.float32)
    out = out.to(values.device)
    out.scatter_add_(-1, torch.where(kept, cols, len(features)), values.float() * kept)
    return out[..., :-1]


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_v p_v (log p_v - log q_v)`` over the last dimension, in float64."""
    log_p, log_q = log_p.double(), log_q.double()
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def replace_hidden(output, hidden: torch.Tensor):
    """A decoder block's ``output`` (a tensor, or a tuple whose first item is the hidden
    states) with the hidden states swapped for ``hidden``, structure kept."""
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


class _BlockOutputHook:
    """Records or rewrites the output of one decoder block.

    ``edit`` (when set) maps the block's hidden states to their replacement for the
    current forward; ``captured`` holds the hidden states the block produced.
    """

    def __init__(self):
        self.edit = None
        self.captured: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self.captured = hidden.detach()
        if self.edit is None:
            return None
        return replace_hidden(output, self.edit(hidden).to(hidden.dtype))


def final_log_probs(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """float64 log-softmax of the next-token logits at the last position, ``(batch, vocab)``.

    Normalising in float64 keeps ``KL(p || q)`` of two nearly equal distributions from
    coming out slightly negative through float32 rounding of the log-partition function.

    With ``logits_to_keep=1`` the LM head (a vocabulary-sized matmul per position) runs at
    the last position only; models whose forward lacks the argument get full logits.
    """
    kwargs = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    logits = model(input_ids=input_ids, use_cache=False, **kwargs).logits[:, -1]
    return torch.log_softmax(logits.double(), dim=-1)


def _accepts_logits_to_keep(model: nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


@torch.no_grad()
def ablation_kl(
    model: nn.Module,
    sae: TopKSAE,
    layer: int,
    prompts: torch.Tensor,
    features,
    *,
    mode: str = "error_preserving",
    feature_batch_size: int = 16,
    prompt_batch_size: int = 16,
    device: torch.device | None = None,
    skip_zero_edits: bool = True,
) -> dict:
    """Mean over ``prompts`` of ``KL(original || ablated)`` at the final position, for each
    of ``features`` ablated alone from the output of decoder block ``layer``.

    ``prompts`` is a ``(n_prompts, context)`` integer tensor of unpadded token ids. A first
    pass per ``prompt_batch_size`` prompts records the clean layer-``layer`` residual, its
    SAE code and the original final-position log-probabilities. Each ablation forward then
    holds up to ``feature_batch_size * prompt_batch_size`` (feature, prompt) rows, feature
    by feature, each row carrying its own edit at every position of its context.

    With ``skip_zero_edits`` a (feature, prompt) pair whose edit is identically zero (f never
    fires on the prompt, or its decoder row is zero) is not run: its ablated model is the
    unablated one, so its KL is exactly 0 (``error_preserving``) or exactly the prompt's
    reconstruction baseline (``reconstruction``). ``False`` runs every pair, to check that.

    The model and the SAE are moved to ``device`` (default: where the model is).
    Returns ``kl`` ``(n_features,)`` and ``kl_per_prompt`` ``(n_features, n_prompts)`` as
    float64 arrays, and ``reconstruction_baseline_kl`` (mean, with its per-prompt values)
    in ``reconstruction`` mode, else None.
    """
    features = _check_inputs(
        model, sae, layer, prompts, features, mode, feature_batch_size, prompt_batch_size
    )
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    sae.to(device)
    prompts = prompts.to(device, torch.long)
    features_t = torch.as_tensor(features, dtype=torch.long, device=device)
    n_prompts, n_features = len(prompts), len(features)

    hook = _BlockOutputHook()
    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        clean = _clean_pass(model, sae, hook, prompts, features_t, mode, prompt_batch_size)
        directions = feature_directions(sae, features_t)
        nonzero_edit = (clean["z"] != 0).any(dim=1).T & (directions != 0).any(dim=1)[:, None]
        if skip_zero_edits:
            pairs = nonzero_edit.nonzero()
        else:
            pairs = torch.ones_like(nonzero_edit).nonzero()
        baseline = clean["baseline_kl"]
        kl = torch.zeros(n_features, n_prompts, dtype=torch.float64, device=device)
        if baseline is not None:
            kl += baseline
        rows_per_forward = feature_batch_size * prompt_batch_size
        progress = tqdm(
            range(0, len(pairs), rows_per_forward),
            desc=f"ablation L{layer} ({mode})",
            file=sys.stderr,
            mininterval=10,
        )
        for start in progress:
            feature_col, prompt_row = pairs[start : start + rows_per_forward].T
            z = clean["z"][prompt_row, :, feature_col]
            delta = z[:, :, None] * directions[feature_col][:, None, :]
            if mode == "error_preserving":
                hook.edit = lambda hidden, delta=delta: hidden.float() - delta
            else:
                x_rec = clean["x_rec"][prompt_row]
                hook.edit = lambda hidden, x_rec=x_rec, delta=delta: x_rec - delta
            ablated = final_log_probs(model, prompts[prompt_row])
            hook.edit = None
            kl[feature_col, prompt_row] = kl_divergence(clean["log_probs"][prompt_row], ablated)
    finally:
        hook.edit = None
        handle.remove()

    if not torch.isfinite(kl).all():
        raise FloatingPointError(
            f"the ablation KL at layer {layer} is NaN or Inf for some feature; the model or "
            "the SAE produced non-finite values"
        )
    kl_np = kl.cpu().numpy()
    return {
        "features": [int(f) for f in features],
        "kl": kl_np.mean(axis=1),
        "kl_per_prompt": kl_np,
        "n_prompts": n_prompts,
        "context": int(prompts.shape[1]),
        "layer": layer,
        "mode": mode,
        "reconstruction_baseline_kl": None if baseline is None else float(baseline.mean()),
        "reconstruction_baseline_kl_per_prompt": (
            None if baseline is None else baseline.cpu().numpy()
        ),
        "fired": nonzero_edit.cpu().numpy(),
        "n_pairs_run": int(len(pairs)),
        "n_pairs_zero_edit": int((~nonzero_edit).sum()),
    }


def _clean_pass(
    model: nn.Module,
    sae: TopKSAE,
    hook: _BlockOutputHook,
    prompts: torch.Tensor,
    features: torch.Tensor,
    mode: str,
    prompt_batch_size: int,
) -> dict:
    """Per prompt, once: the original final log-probs, the activations ``z`` of
    ``features`` at every position ``(n_prompts, context, n_features)``, and in
    ``reconstruction`` mode the reconstruction ``x_rec`` and the KL of injecting it."""
    log_probs, z, x_rec, baseline = [], [], [], []
    for start in range(0, len(prompts), prompt_batch_size):
        ids = prompts[start : start + prompt_batch_size]
        hook.edit = None
        log_probs.append(final_log_probs(model, ids))
        residual = hook.captured
        values, indices = sae.encode(residual)
        z.append(feature_activations(values, indices, features, sae.d_sae))
        if mode == "reconstruction":
            rec = sae.denormalise(sae.decode(values, indices)).float()
            hook.edit = lambda hidden, rec=rec: rec
            baseline.append(kl_divergence(log_probs[-1], final_log_probs(model, ids)))
            hook.edit = None
            x_rec.append(rec)
    return {
        "log_probs": torch.cat(log_probs),
        "z": torch.cat(z),
        "x_rec": torch.cat(x_rec) if x_rec else None,
        "baseline_kl": torch.cat(baseline) if baseline else None,
    }


def _check_inputs(
    model, sae, layer, prompts, features, mode, feature_batch_size, prompt_batch_size
) -> list[int]:
    if mode not in MODES:
        raise ValueError(f"ablation mode {mode!r} is not one of {list(MODES)}")
    check_layer_index(model, layer)
    if not isinstance(prompts, torch.Tensor) or prompts.ndim != 2 or prompts.is_floating_point():
        raise ValueError("prompts must be a 2-D integer tensor of shape (n_prompts, context)")
    if prompts.numel() == 0:
        raise ValueError("prompts must hold at least one prompt of at least one token")
    vocab_size = model.get_input_embeddings().num_embeddings
    if prompts.min() < 0 or prompts.max() >= vocab_size:
        raise ValueError(f"prompts hold token ids outside the vocabulary 0..{vocab_size - 1}")
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and prompts.shape[1] > max_positions:
        raise ValueError(
            f"prompt context {prompts.shape[1]} exceeds the model's {max_positions} positions"
        )
    hidden_size = stream_width(model)
    if sae.d_model != hidden_size:
        raise ValueError(f"SAE d_model {sae.d_model} differs from the model width {hidden_size}")
    features = [int(f) for f in np.asarray(features, dtype=np.int64).reshape(-1)]
    if not features:
        raise ValueError("features must name at least one SAE feature")
    if min(features) < 0 or max(features) >= sae.d_sae:
        raise ValueError(f"features must be SAE feature indices in 0..{sae.d_sae - 1}")
    if len(set(features)) != len(features):
        raise ValueError("features must not repeat a feature index")
    for name, value in (
        ("feature_batch_size", feature_batch_size),
        ("prompt_batch_size", prompt_batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    return features


__all__ = [
    "MODES",
    "ablation_kl",
    "feature_activations",
    "feature_directions",
    "final_log_probs",
    "kl_divergence",
    "replace_hidden",
]
