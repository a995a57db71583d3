"""Tiny random causal LMs of every family prunescope supports, for tests that need a real model.

``ARCHITECTURES`` are the paper's three (Llama, Gemma 2, Gemma 3), which most tests run on;
``FAMILIES_TESTED`` adds one tiny instance of every other family of
``prunescope.architectures.FAMILIES`` (tests/test_architectures.py runs them all).
"""

from __future__ import annotations

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ARCHITECTURES = ("llama", "gemma2", "gemma3")
FAMILIES_TESTED = (
    *ARCHITECTURES,
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "olmo2",
    "gpt2",
    "gpt_neox",
    "opt",
)
_CLASSES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "gemma2": (Gemma2Config, Gemma2ForCausalLM),
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "phi3": (Phi3Config, Phi3ForCausalLM),
    "olmo2": (Olmo2Config, Olmo2ForCausalLM),
    "gpt2": (GPT2Config, GPT2LMHeadModel),
    "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM),
    "opt": (OPTConfig, OPTForCausalLM),
}
# Special tokens inside a tiny vocabulary (Phi-3, GPT-2 and GPT-NeoX default to ids > 32000).
_SPECIAL_TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _settings(arch: str, vocab_size: int, layers: int, positions: int) -> dict:
    """Hidden 32, 4 heads, MLP width 64, under each family's own config keywords."""
    if arch == "gpt2":
        return dict(
            vocab_size=vocab_size,
            n_embd=32,
            n_inner=64,
            n_layer=layers,
            n_head=4,
            n_positions=positions,
            **_SPECIAL_TOKENS,
        )
    settings = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
    )
    if arch in ("gemma2", "gemma3"):
        # a sliding window shorter than the test sequences, so local attention really masks
        settings.update(head_dim=8, sliding_window=4)
    elif arch == "mistral":
        settings.update(sliding_window=4)
    elif arch == "qwen3":
        settings.update(head_dim=8)  # Qwen3Config defaults to 128, not hidden / heads
    elif arch == "gpt_neox":
        del settings["num_key_value_heads"]  # no grouped-query attention
        settings.update(_SPECIAL_TOKENS)  # use_parallel_residual stays True, as in Pythia
    elif arch == "opt":
        del settings["num_key_value_heads"], settings["intermediate_size"]
        settings.update(ffn_dim=64, word_embed_proj_dim=32, **_SPECIAL_TOKENS)
    if arch in ("phi3", "olmo2"):
        settings.update(_SPECIAL_TOKENS)
    return settings


def tiny_causal_lm(
    arch: str,
    vocab_size: int,
    num_hidden_layers: int = 3,
    max_position_embeddings: int = 64,
    seed: int = 0,
    **overrides,
) -> torch.nn.Module:
    """A randomly initialised ``arch`` model (hidden 32, 4 heads, 2 KV heads where the family
    has grouped-query attention, MLP width 64), in eval mode. ``overrides`` are config
    keywords of ``arch``'s own config class."""
    config_class, model_class = _CLASSES[arch]
    settings = _settings(arch, vocab_size, num_hidden_layers, max_position_embeddings)
    torch.manual_seed(seed)
    return model_class(config_class(**{**settings, **overrides})).eval()
