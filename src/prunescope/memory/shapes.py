"""The widths of a decoder that size its weights and activations: from the config for a
model trained here, from its ``config.json`` for a hub model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prunescope.architectures import language_model_config
from prunescope.checks import model_shape


@dataclass(frozen=True)
class ModelShape:
    """The widths of a Llama/Gemma-style decoder that size its weights and activations."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool
    norms_per_layer: int = 2
    """RMSNorm weights of hidden_size per block: 2 for Llama, 4 for Gemma 2 and 3."""
    qk_norm: bool = False
    """Gemma 3 normalises queries and keys (two head_dim weights per block)."""
    logit_softcapping: bool = False
    """Gemma 2 squashes the logits through tanh: one more logits-sized tensor."""
    key: str = "models"
    """Where the config sets these widths, for messages."""

    @classmethod
    def from_local(cls, config: dict, model: str) -> ModelShape:
        """A model trained here: its ``architecture`` block and tokenizer vocabulary."""
        spec = config["models"][model]
        arch = model_shape(config, model)  # the architecture block over LlamaConfig's defaults
        heads = arch["num_attention_heads"]
        return cls(
            hidden_size=arch["hidden_size"],
            intermediate_size=arch["intermediate_size"],
            num_hidden_layers=arch["num_hidden_layers"],
            # an upper bound: a small corpus can leave the BPE vocabulary short of it
            vocab_size=spec["tokenizer"]["vocab_size"],
            num_attention_heads=heads,
            num_key_value_heads=arch.get("num_key_value_heads") or heads,
            head_dim=arch["hidden_size"] // heads,
            tie_word_embeddings=arch["tie_word_embeddings"],
            key=f"models.{model}.architecture",
        )

    @classmethod
    def from_hf_config(cls, hf_config: Mapping, model: str = "") -> ModelShape:
        """A transformers config (``config.json`` as a dict, or ``config.to_dict()``)."""
        # multimodal configs nest the LM's; GPT-2 and OPT name some widths their own way
        cfg = language_model_config(dict(hf_config))
        model_type = str(cfg.get("model_type", ""))
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        gemma = model_type.startswith("gemma")
        return cls(
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            vocab_size=int(cfg["vocab_size"]),
            num_attention_heads=heads,
            num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", gemma)),
            norms_per_layer=4 if model_type in ("gemma2", "gemma3", "gemma3_text") else 2,
            qk_norm=model_type in ("gemma3", "gemma3_text"),
            logit_softcapping=bool(cfg.get("final_logit_softcapping")),
            key=f"models.{model}" if model else "models",
        )

    @property
    def attention_width(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of one block's q, k, v, o, gate, up and down projections."""
        d, inner = self.hidden_size, self.intermediate_size
        attn, kv = self.attention_width, self.kv_width
        return [(attn, d), (kv, d), (kv, d), (d, attn), (inner, d), (inner, d), (d, inner)]

    @property
    def prunable_parameters(self) -> int:
        return self.num_hidden_layers * sum(rows * cols for rows, cols in self.linear_shapes())

    @property
    def parameters(self) -> int:
        d = self.hidden_size
        embeddings = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        norms = self.num_hidden_layers * (
            self.norms_per_layer * d + (2 * self.head_dim if self.qk_norm else 0)
        )
        return embeddings + self.prunable_parameters + norms + d


def local_shape(config: dict, model: str) -> ModelShape | None:
    """The model's shape when the config alone gives it (a model trained here), else None."""
    if config["models"][model]["source"] == "local":
        return ModelShape.from_local(config, model)
    return None


def hub_shape(config: dict, model: str) -> ModelShape | None:
    """A hub model's shape when its config.json is already on this machine (a local folder,
    the copy under results/, the Hugging Face cache: ``checks.model_shape``), else None."""
    if config["models"][model]["source"] != "hf":
        return None
    found = model_shape(config, model)
    try:
        return None if found is None else ModelShape.from_hf_config(found, model)
    except (KeyError, TypeError, ValueError):  # not a decoder config this module can size
        return None


def hub_shapes(config: dict) -> dict[str, ModelShape]:
    """``hub_shape`` of every hub model whose shape is known now."""
    shapes = {model: hub_shape(config, model) for model in config["models"]}
    return {model: shape for model, shape in shapes.items() if shape is not None}
