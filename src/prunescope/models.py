"""Loading causal LMs and finding the parts every stage touches.

One code path for every model: a local folder (trained here or saved by a
test) or a hub name, both through ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from prunescope.artifacts import damaged, read_safetensors_header
from prunescope.io import read_json

MODEL_FOLDER = "model folder"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def load_causal_lm(path_or_name: str, dtype: str = "float32", device: str = "auto"):
    """Load ``(model, tokenizer)`` in eval mode.

    Raises a one-sentence error for a local-looking path that does not exist, and
    for a local folder with a truncated or corrupt file, or with weights missing or
    of the wrong shape (which ``from_pretrained`` would silently initialise at random).
    Refuses float16 for Gemma models, whose deep residual streams overflow float16
    and turn into NaN.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    looks_local = path_or_name.startswith((".", "/", "results")) or Path(path_or_name).exists()
    if looks_local and not Path(path_or_name).is_dir():
        raise FileNotFoundError(f"model folder {path_or_name!r} does not exist")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if looks_local:
        check_model_folder(path_or_name)
    config = AutoConfig.from_pretrained(path_or_name)
    check_dtype_for_model(config.model_type, dtype)
    model, loading = AutoModelForCausalLM.from_pretrained(
        path_or_name,
        dtype=DTYPES[dtype],
        output_loading_info=True,
        ignore_mismatched_sizes=looks_local,  # reported below, naming the folder
    )
    if looks_local:
        _check_loaded_weights(path_or_name, loading)
    model.to(pick_device(device)).eval()
    tokenizer = AutoTokenizer.from_pretrained(path_or_name)
    return model, tokenizer


def check_model_folder(folder: str | Path) -> None:
    """Check the files of a saved model folder before loading: every JSON file parses and
    every safetensors header is whole and covers its file (which finds a truncated file).

    Reads headers only, so it costs little next to loading; garbage inside the weights
    themselves is not found here.
    """
    folder = Path(folder)
    for path in sorted(folder.glob("*.json")):
        read_json(path, "model file")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not (folder / "pytorch_model.bin").is_file():
        raise FileNotFoundError(f"{MODEL_FOLDER} {folder} has no weights (model.safetensors)")
    for path in weights:
        read_safetensors_header(path, "model weights file")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(read_json(index, "model file").get("weight_map", {}).values())
        missing = sorted(name for name in shards if not (folder / name).is_file())
        if missing:
            raise damaged(MODEL_FOLDER, folder, f"lacks the weight shards {missing}")


def _check_loaded_weights(folder: str, loading: dict) -> None:
    """Refuse a model some of whose weights were missing or of the wrong shape on disk."""
    missing = sorted(loading.get("missing_keys", ()))
    if missing:
        listed = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if missing[3:] else "")
        raise damaged(MODEL_FOLDER, folder, f"lacks the weights {listed}, so it is incomplete")
    mismatched = sorted(loading.get("mismatched_keys", ()), key=lambda item: item[0])
    if mismatched:
        name, on_disk, expected = mismatched[0]
        raise damaged(
            MODEL_FOLDER,
            folder,
            f"has {name} of shape {tuple(on_disk)} where its config.json implies "
            f"{tuple(expected)} ({len(mismatched)} weights differ)",
        )


def check_dtype_for_model(model_type: str, dtype: str) -> None:
    if dtype == "float16" and model_type.startswith("gemma"):
        raise ValueError(
            f"dtype float16 is refused for {model_type} models: their residual stream "
            "overflows float16 at deep layers; use bfloat16 or float32"
        )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a decoder-only HF model."""
    for owner in (getattr(model, "model", None), model):
        layers = getattr(owner, "layers", None)
        if isinstance(layers, nn.ModuleList):
            return layers
        inner = getattr(owner, "language_model", None)
        if inner is not None and isinstance(getattr(inner, "layers", None), nn.ModuleList):
            return inner.layers
    raise TypeError(f"cannot find the decoder layers of {type(model).__name__}")


def check_layer_index(model: nn.Module, layer: int) -> None:
    n = len(decoder_layers(model))
    if not 0 <= layer < n:
        raise ValueError(f"layer {layer} is past the model's depth: it has layers 0..{n - 1}")


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` inside the decoder blocks, by qualified name.

    Embeddings and ``lm_head`` sit outside the blocks and are never returned.
    """
    out: dict[str, nn.Linear] = {}
    for i, block in enumerate(decoder_layers(model)):
        for name, module in block.named_modules():
            if isinstance(module, nn.Linear):
                out[f"layers.{i}.{name}"] = module
    return out


class _StopForward(Exception):
    """Raised by a capture hook to end the forward pass once the wanted block has run."""


class ResidualCapture:
    """The residual stream after one decoder block (``resid_post``), from the latest forward.

    ``output`` is the block's output hidden states ``[batch, positions, d_model]`` in the
    model's dtype. This is the block output before any final norm: for the last block it
    differs from HF's ``hidden_states[-1]``, which has the model's final norm applied.
    """

    def __init__(self, model: nn.Module, layer: int, stop_early: bool):
        self.model = model
        self.layer = layer
        self.stop_early = stop_early
        self.output: torch.Tensor | None = None

    def run(self, input_ids: torch.Tensor, **forward_kwargs) -> torch.Tensor:
        """Forward ``input_ids`` and return the captured block output.

        With ``stop_early`` the blocks after ``layer`` (and the LM head) never run, so
        capturing layer 2 of a 26-layer model costs three blocks, not 26.
        """
        self.output = None
        try:
            self.model(input_ids=input_ids, use_cache=False, **forward_kwargs)
        except _StopForward:
            pass
        if self.output is None:
            raise RuntimeError(f"the forward pass never reached decoder layer {self.layer}")
        return self.output

    def _hook(self, module: nn.Module, args, output) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        self.output = hidden.detach()
        if self.stop_early:
            raise _StopForward


@contextlib.contextmanager
def residual_hook(
    model: nn.Module, layer: int, *, stop_early: bool = False
) -> Iterator[ResidualCapture]:
    """Record the output of ``decoder_layers(model)[layer]`` on every forward.

    Use ``capture.run(ids)`` to forward and get the activation; with ``stop_early`` a
    direct ``model(...)`` call would be cut short by a private exception, so always go
    through ``run``. The hook is removed on exit, also after an error.
    """
    check_layer_index(model, layer)
    capture = ResidualCapture(model, layer, stop_early)
    handle = decoder_layers(model)[layer].register_forward_hook(capture._hook)
    try:
        yield capture
    finally:
        handle.remove()
