"""Sliding-window perplexity of a causal LM on one held-out token stream.

The standard evaluation of fixed-length models (HF's "perplexity of fixed-length
models"): windows of ``window`` tokens advance by ``stride``, and each token is scored
once, by the first window that contains it, so it sees up to ``window - 1`` tokens of
context. The same function scores every condition, dense or pruned.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


def sliding_windows(n_tokens: int, *, text_window: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_target)`` for each window over a stream of ``n_tokens``.

    A window reads stream positions ``[begin, end)`` and scores ``[first_target, end)``,
    the positions no earlier window reached. With ``stride < text_window`` that is the
    last ``stride`` positions of every window after the first. The last window may be
    shorter; the walk stops once a window reaches the end of the stream.
    """
    if not 1 <= stride <= text_window:
        raise ValueError(f"stride {stride} must be in 1..{text_window} (the window's text tokens)")
    plan = []
    previous_end = 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + text_window, n_tokens)
        plan.append((begin, end, previous_end))
        previous_end = end
        if end == n_tokens:
            break
    return plan


def perplexity(
    model: nn.Module,
    token_ids: torch.Tensor,
    *,
    window: int,
    stride: int,
    bos_id: int | None,
    batch_size: int = 8,
    device: torch.device | None = None,
) -> dict:
    """Perplexity ``exp(mean NLL)`` of ``token_ids`` (1-D, a concatenated held-out stream).

    With ``bos_id`` every window starts with BOS (so it holds ``window - 1`` text tokens)
    and the BOS itself is never scored; every text token is then scored. Without it the
    first token of a window that has no earlier context in that window (the stream's
    first token, and every window's first token when ``stride == window``) is not
    scored. NLLs are summed in float64. The model is moved to ``device`` (default: where
    it already is).
    """
    _check_inputs(model, token_ids, window, stride, bos_id, batch_size)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    token_ids = token_ids.to("cpu", torch.long)
    offset = 0 if bos_id is None else 1
    plan = sliding_windows(len(token_ids), text_window=window - offset, stride=stride)
    if len(token_ids) - (bos_id is None) * sum(first == begin for begin, _, first in plan) < 1:
        raise ValueError(f"no token of the {len(token_ids)}-token stream can be scored")

    total_nll = 0.0
    n_scored = 0
    progress = tqdm(total=len(plan), desc="perplexity", file=sys.stderr, mininterval=5)
    with torch.inference_mode(), progress:
        for batch in _equal_length_batches(plan, batch_size):
            inputs = torch.stack([token_ids[begin:end] for begin, end, _ in batch])
            if bos_id is not None:
                inputs = torch.cat([torch.full((len(batch), 1), bos_id), inputs], dim=1)
            # labels[i, p] is the token predicted from logits[i, p]: the input at p + 1,
            # kept only where that input is a text position this window scores.
            labels = torch.full_like(inputs, -100)
            for i, (begin, end, first_target) in enumerate(batch):
                first = max(first_target, begin + 1 - offset)
                predicted_at = first - begin + offset - 1
                labels[i, predicted_at : predicted_at + end - first] = token_ids[first:end]
            logits = model(input_ids=inputs.to(device), use_cache=False).logits
            labels = labels.to(device)
            for i in range(len(batch)):
                nll = F.cross_entropy(logits[i].float(), labels[i], reduction="none")
                total_nll += nll.double().sum().item()
            n_scored += int((labels != -100).sum())
            if not math.isfinite(total_nll):
                raise FloatingPointError(
                    f"the model's log-likelihood became NaN or Inf in the window starting at "
                    f"token {batch[0][0]} of {len(token_ids)}"
                )
            progress.update(len(batch))

    mean_nll = total_nll / n_scored
    return {
        "perplexity": math.exp(mean_nll) if mean_nll < 700 else math.inf,
        "nll": mean_nll,
        "n_tokens_scored": n_scored,
        "n_tokens": len(token_ids),
        "n_windows": len(plan),
        "window": window,
        "stride": stride,
        "bos_id": bos_id,
    }


def _equal_length_batches(plan: list[tuple[int, int, int]], batch_size: int):
    """Consecutive windows of one length, at most ``batch_size`` at a time (no padding)."""
    batch: list[tuple[int, int, int]] = []
    for entry in plan:
        if batch and (len(batch) == batch_size or entry[1] - entry[0] != batch[0][1] - batch[0][0]):
            yield batch
            batch = []
        batch.append(entry)
    if batch:
        yield batch


def _check_inputs(
    model: nn.Module,
    token_ids: torch.Tensor,
    window: int,
    stride: int,
    bos_id: int | None,
    batch_size: int,
) -> None:
    if not isinstance(token_ids, torch.Tensor) or token_ids.ndim != 1:
        raise ValueError("token_ids must be a 1-D tensor holding one concatenated token stream")
    if token_ids.is_floating_point() or len(token_ids) == 0:
        raise ValueError("token_ids must be a non-empty integer tensor")
    vocab_size = model.get_input_embeddings().num_embeddings
    if token_ids.min() < 0 or token_ids.max() >= vocab_size:
        raise ValueError(f"token_ids has ids outside the vocabulary 0..{vocab_size - 1}")
    if bos_id is not None and not 0 <= bos_id < vocab_size:
        raise ValueError(f"bos_id {bos_id} is outside the vocabulary 0..{vocab_size - 1}")
    if window < 2:
        raise ValueError(f"window {window} must be at least 2 (one token of context)")
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions is not None and window > max_positions:
        raise ValueError(f"window {window} exceeds the model's {max_positions} positions")
    text_window = window - (bos_id is not None)
    if not 1 <= stride <= text_window:
        raise ValueError(f"stride {stride} must be in 1..{text_window} (the window's text tokens)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
