"""A byte-level BPE tokenizer and a tiny Llama-architecture LM trained from scratch.

The default workflow needs a real causal LM that runs on a laptop with no
network; this module trains one on the configured corpus and saves it as an
ordinary Hugging Face folder, so every later stage loads it exactly as it
would load a hub model.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer (GPT-2 style: no unknown tokens).

    Returns a ``transformers.PreTrainedTokenizerFast`` with BOS/EOS/PAD set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)


@dataclass
class TrainingConfig:
    """How the tiny LM is trained."""

    steps: int = 1000  # optimiser steps
    batch_size: int = 16  # windows per step
    lr: float = 3e-3  # AdamW's peak, reached after warmup, cosine-decayed to 10 %
    warmup_steps: int = 50  # linear warmup
    weight_decay: float = 0.1  # AdamW's, on matrices only
    grad_clip: float = 1.0  # largest gradient norm
    seed: int = 0  # which windows make each batch
    log_every: int = 50  # steps between loss records


def build_llama(tokenizer, architecture: dict, seed: int = 0):
    """A ``LlamaForCausalLM`` sized by ``architecture``, initialised from ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # eager attention trains this small model ~5x faster than SDPA on CPU (measured)
        attn_implementation="eager",
        **architecture,
    )
    return LlamaForCausalLM(config)


def lr_at(step: int, cfg: TrainingConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def mean_loss(model, windows: torch.Tensor, batch_size: int, device) -> float:
    """Mean next-token cross-entropy over all windows (BOS never a target)."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size].to(device)
            logits = model(batch).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total += loss.item()
            count += batch[:, 1:].numel()
    return total / count


def train_lm(
    model, train_windows: torch.Tensor, eval_windows: torch.Tensor, cfg: TrainingConfig, device
) -> dict:
    """Train ``model`` on random batches of ``train_windows``; return a report.

    Fails loudly on a non-finite loss instead of saving a broken model.
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    curve = []
    started = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train LM", file=sys.stderr, mininterval=5)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        rows = torch.randint(train_windows.shape[0], (cfg.batch_size,), generator=generator)
        batch = train_windows[rows].to(device)
        loss = model(batch, labels=batch).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"tiny LM training loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            curve.append([step, loss.item()])
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.perf_counter() - started
    eval_loss = mean_loss(model, eval_windows, cfg.batch_size, device)
    return {
        "training": asdict(cfg),
        "train_seconds": train_seconds,
        "tokens_seen": cfg.steps * cfg.batch_size * train_windows.shape[1],
        "final_train_loss": curve[-1][1],
        "eval_loss": eval_loss,
        "eval_perplexity": math.exp(eval_loss),
        "loss_curve": curve,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
