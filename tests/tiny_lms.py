"""Tiny random causal LMs of the paper's three architectures, for tests that need a real model."""

from __future__ import annotations

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

ARCHITECTURES = ("llama", "gemma2", "gemma3")
_CLASSES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "gemma2": (Gemma2Config, Gemma2ForCausalLM),
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM),
}


def tiny_causal_lm(
    arch: str,
    vocab_size: int,
    num_hidden_layers: int = 3,
    max_position_embeddings: int = 64,
    seed: int = 0,
    **overrides,
) -> torch.nn.Module:
    """A randomly initialised ``arch`` model (hidden 32, 4 heads, 2 KV heads), in eval mode."""
    config_class, model_class = _CLASSES[arch]
    settings = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
    )
    if arch != "llama":
        # a sliding window shorter than the test sequences, so local attention really masks
        settings.update(head_dim=8, sliding_window=4)
    torch.manual_seed(seed)
    return model_class(config_class(**{**settings, **overrides})).eval()
