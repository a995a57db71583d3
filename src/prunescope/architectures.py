"""Where each supported family of causal LMs keeps what prunescope touches.

One entry per family says where its decoder blocks are, which matrices inside a block are
pruned, where its final norm is and what its config.json calls its widths. Pruning
(magnitude, Wanda, SparseGPT, N:M), activation capture, ablation and perplexity all ask
this table, so a new family is one entry here (and its tiny-model test), not a branch in
each of them.

The residual stream a block writes (``resid_post``) is the block's own output in every
family here, whatever it does inside: GPT-NeoX's attention and MLP read the same input in
parallel, OPT-350m normalises after the residual add, and each block's output is still
what the next block reads.

GPT-2 stores its projections as ``transformers.pytorch_utils.Conv1D``, whose ``weight``
is ``(in, out)``, the transpose of ``nn.Linear``'s. ``weight_matrix`` gives every prunable
matrix as ``(out, in)``, a view that writes through to the stored weight, so a score, mask
or update computed along a row's inputs lands on the real input dimension of either kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prunescope.errors import UserInputError, keyed

if TYPE_CHECKING:  # the table and the config checks must not cost a torch import
    from torch import Tensor, nn

ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
GATED_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")

SITES = ("attn_in", "mlp_in")
"""The two streams a pre-norm block reads: the one entering its attention's norm (the block
input) and the one entering its MLP's norm (after the attention's residual add, or the
block input again where attention and MLP run in parallel)."""


@dataclass(frozen=True)
class FeatureSite:
    """Where a block reads one stream through a norm: the norm module's path inside the
    block, and the projections that read the norm's output. Feature-aware pruning sees an
    SAE's features of the stream entering ``norm`` through that norm."""

    norm: str
    projections: tuple[str, ...]


def _pre_norm_sites(attn_norm, attn, mlp_norm, mlp) -> dict[str, FeatureSite]:
    return {"attn_in": FeatureSite(attn_norm, attn), "mlp_in": FeatureSite(mlp_norm, mlp)}


LLAMA_SITES = _pre_norm_sites(
    "input_layernorm", ATTENTION[:3], "post_attention_layernorm", GATED_MLP[:2]
)


@dataclass(frozen=True)
class Family:
    """One architecture family.

    ``model_types``: the ``model_type`` values of its config.json. ``blocks`` and
    ``final_norm``: attribute paths from the ``*ForCausalLM`` model, the first that exists
    wins (a multimodal checkpoint nests its language model one level deeper).
    ``projections``: the prunable matrices inside one block, by name; fused ones (q/k/v in
    one matrix) are pruned as the one matrix they are. ``widths``: config.json keys of this
    family that name a standard width (``n_embd`` -> ``hidden_size``).
    """

    name: str
    label: str
    model_types: tuple[str, ...]
    blocks: tuple[str, ...]
    final_norm: tuple[str, ...]
    projections: tuple[str, ...]
    widths: dict[str, str] = field(default_factory=dict)
    mlp_ratio: int | None = None
    """When the config leaves the MLP width unset (GPT-2's ``n_inner: null``): this many
    times ``hidden_size``."""
    feature_sites: dict[str, FeatureSite] = field(default_factory=dict)
    """The normalised streams its blocks read (:data:`SITES`), for feature-aware pruning;
    empty for a family whose projections read the residual stream without a norm first."""


LLAMA_LIKE = dict(
    blocks=("model.layers", "model.language_model.layers"),
    final_norm=("model.norm", "model.language_model.norm"),
    projections=ATTENTION + GATED_MLP,
)
# Gemma 2 and 3 norm the attention's output before the residual add
# (post_attention_layernorm); the MLP reads the stream through pre_feedforward_layernorm.
GEMMA_SITES = _pre_norm_sites(
    "input_layernorm", ATTENTION[:3], "pre_feedforward_layernorm", GATED_MLP[:2]
)

FAMILIES: tuple[Family, ...] = (
    Family("llama", "Llama", ("llama",), **LLAMA_LIKE, feature_sites=LLAMA_SITES),
    Family("mistral", "Mistral", ("mistral",), **LLAMA_LIKE, feature_sites=LLAMA_SITES),
    Family("qwen", "Qwen2 / Qwen3", ("qwen2", "qwen3"), **LLAMA_LIKE, feature_sites=LLAMA_SITES),
    Family("gemma2", "Gemma 2", ("gemma2",), **LLAMA_LIKE, feature_sites=GEMMA_SITES),
    Family("gemma3", "Gemma 3", ("gemma3_text", "gemma3"), **LLAMA_LIKE, feature_sites=GEMMA_SITES),
    # OLMo 2 norms after attention and MLP, so its projections read the raw stream
    Family("olmo2", "OLMo 2", ("olmo2",), **LLAMA_LIKE),
    Family(
        "phi3",
        "Phi-3",
        ("phi3",),
        blocks=("model.layers",),
        final_norm=("model.norm",),
        projections=("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"),
        feature_sites=_pre_norm_sites(
            "input_layernorm",
            ("self_attn.qkv_proj",),
            "post_attention_layernorm",
            ("mlp.gate_up_proj",),
        ),
    ),
    Family(
        "gpt2",
        "GPT-2",
        ("gpt2",),
        blocks=("transformer.h",),
        final_norm=("transformer.ln_f",),
        projections=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
        widths={
            "n_embd": "hidden_size",
            "n_layer": "num_hidden_layers",
            "n_head": "num_attention_heads",
            "n_inner": "intermediate_size",
            "n_positions": "max_position_embeddings",
        },
        mlp_ratio=4,
        feature_sites=_pre_norm_sites("ln_1", ("attn.c_attn",), "ln_2", ("mlp.c_fc",)),
    ),
    Family(
        "gpt_neox",
        "GPT-NeoX (Pythia)",
        ("gpt_neox",),
        blocks=("gpt_neox.layers",),
        final_norm=("gpt_neox.final_layer_norm",),
        projections=(
            "attention.query_key_value",
            "attention.dense",
            "mlp.dense_h_to_4h",
            "mlp.dense_4h_to_h",
        ),
        # with use_parallel_residual the MLP's norm reads the block input, as attention's does
        feature_sites=_pre_norm_sites(
            "input_layernorm",
            ("attention.query_key_value",),
            "post_attention_layernorm",
            ("mlp.dense_h_to_4h",),
        ),
    ),
    Family(
        "opt",
        "OPT",
        ("opt",),
        blocks=("model.decoder.layers",),
        final_norm=("model.decoder.final_layer_norm",),
        projections=(
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
            "fc1",
            "fc2",
        ),
        widths={"ffn_dim": "intermediate_size"},
        # OPT-350m norms after each sublayer instead (do_layer_norm_before false):
        # feature_sites_of refuses it
        feature_sites=_pre_norm_sites(
            "self_attn_layer_norm", ATTENTION[:3], "final_layer_norm", ("fc1",)
        ),
    ),
)

BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}


def supported() -> str:
    """The supported families, for a sentence."""
    return ", ".join(family.label for family in FAMILIES)


def family_for(model_type: str, model_class: str | None = None, key: str | None = None) -> Family:
    """The family of a config.json ``model_type``; anything else is refused in one sentence
    naming the key that chose the model, its class and the supported families."""
    family = BY_MODEL_TYPE.get(model_type)
    if family is None:
        what = f"{model_class} (model_type {model_type!r})" if model_class else repr(model_type)
        raise UserInputError(
            keyed(
                key,
                f"{what} is not an architecture prunescope knows: it finds the blocks, "
                f"prunable projections and residual stream of {supported()}; a new family "
                "is one entry in prunescope.architectures.FAMILIES and its tiny-model test",
            )
        )
    return family


def family_of(model: nn.Module) -> Family:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise TypeError(f"{type(model).__name__} has no config.model_type to tell its family by")
    return family_for(model_type, type(model).__name__)


def _first_attribute(model: nn.Module, paths: tuple[str, ...]) -> nn.Module | None:
    for path in paths:
        node = model
        for name in path.split("."):
            node = getattr(node, name, None)
            if node is None:
                break
        if node is not None:
            return node
    return None


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's transformer blocks, in order."""
    from torch import nn

    family = family_of(model)
    blocks = _first_attribute(model, family.blocks)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(
            f"{type(model).__name__} ({family.label}) has no decoder blocks at "
            f"{' or '.join(family.blocks)}"
        )
    return blocks


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm applied after the last block, or None (OPT-350m normalises inside blocks)."""
    return _first_attribute(model, family_of(model).final_norm)


def block_projections(block: nn.Module, family: Family) -> dict[str, nn.Module]:
    """The prunable matrices of one block, by their name inside it."""
    found = {}
    for name in family.projections:
        module = block.get_submodule(name) if _has_submodule(block, name) else None
        if not is_prunable(module):
            raise TypeError(
                f"{type(block).__name__} has no linear projection {name!r}, which the "
                f"{family.label} entry of prunescope.architectures.FAMILIES lists"
            )
        found[name] = module
    return found


def _has_submodule(block: nn.Module, name: str) -> bool:
    try:
        block.get_submodule(name)
    except AttributeError:
        return False
    return True


def prunable_matrices(model: nn.Module) -> dict[str, nn.Module]:
    """Every prunable matrix of every block, as ``layers.{i}.{name}``. Embeddings, the LM
    head and anything else outside the blocks are never returned."""
    family = family_of(model)
    return {
        f"layers.{i}.{name}": module
        for i, block in enumerate(decoder_blocks(model))
        for name, module in block_projections(block, family).items()
    }


def stream_width(model: nn.Module) -> int:
    """The width of the residual stream the blocks read and write (``hidden_size``), which
    the input embeddings need not share: OPT-350m projects 512-wide embeddings to 1024."""
    return int(model.config.get_text_config().hidden_size)


def is_transposed(module: nn.Module) -> bool:
    """A GPT-2 ``Conv1D``: its weight is stored ``(in, out)``."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def is_prunable(module: nn.Module | None) -> bool:
    from torch import nn

    return isinstance(module, nn.Linear) or (module is not None and is_transposed(module))


def weight_matrix(module: nn.Module) -> Tensor:
    """The weight as ``(out, in)``: ``nn.Linear``'s own, a ``Conv1D``'s transposed. A view
    of the parameter's data, so in-place edits (masks, updates) reach the model."""
    weight = module.weight.data
    return weight.t() if is_transposed(module) else weight


def input_width(module: nn.Module) -> int:
    """How many inputs each output of the matrix reads."""
    return weight_matrix(module).shape[1]


def language_model_config(raw: dict) -> dict:
    """A config.json as the language model sees it: a multimodal one's ``text_config``
    (with the checkpoint's ``architectures``), widths also under the standard names."""
    text = raw.get("text_config") or raw
    if not isinstance(text, dict):
        return {}
    return standard_widths({"architectures": raw.get("architectures"), **text})


def standard_widths(config: dict) -> dict:
    """A config.json with the family's own names for its widths also under the standard
    ones (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
    ``intermediate_size``), which the config checks and memory estimates read."""
    family = BY_MODEL_TYPE.get(str(config.get("model_type", "")))
    if family is None:
        return config
    shape = dict(config)
    for own, standard in family.widths.items():
        if shape.get(own) is not None and shape.get(standard) is None:
            shape[standard] = shape[own]
    if family.mlp_ratio and shape.get("intermediate_size") is None and shape.get("hidden_size"):
        shape["intermediate_size"] = family.mlp_ratio * shape["hidden_size"]
    return shape


__all__ = [
    "FAMILIES",
    "Family",
    "block_projections",
    "decoder_blocks",
    "family_for",
    "family_of",
    "final_norm",
    "input_width",
    "is_prunable",
    "is_transposed",
    "language_model_config",
    "prunable_matrices",
    "standard_widths",
    "stream_width",
    "supported",
    "weight_matrix",
]


def reads_normalised_streams(family: Family, config: dict) -> bool:
    """Whether a model of ``family`` with this config.json has projections that read the
    stream through a norm (OPT-350m's ``do_layer_norm_before: false`` does not)."""
    return bool(family.feature_sites) and config.get("do_layer_norm_before") is not False


def feature_sites_of(model: nn.Module) -> dict[str, FeatureSite]:
    """The normalised streams the model's blocks read, or a ``UserInputError`` saying why a
    model's projections read no normalised stream (OLMo 2, post-norm OPT)."""
    family = family_of(model)
    if not reads_normalised_streams(family, model.config.to_dict()):
        raise UserInputError(
            f"{type(model).__name__} ({family.label}) normalises after its attention and MLP, "
            "so its projections read no normalised stream for an SAE's features to be seen "
            "through: leave the feature and feature_hybrid methods out of this model's grid"
        )
    return family.feature_sites


def site_norm(model: nn.Module, block: int, site: str) -> nn.Module:
    """The norm module through which block ``block`` reads stream ``site``."""
    if site not in SITES:
        raise ValueError(f"site {site!r} is not one of {list(SITES)}")
    return decoder_blocks(model)[block].get_submodule(feature_sites_of(model)[site].norm)
