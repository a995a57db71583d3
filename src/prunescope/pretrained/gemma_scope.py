"""Gemma Scope (``params.npz``) and Gemma Scope 2 (``params.safetensors`` + ``config.json``):
JumpReLU SAEs on the raw activations."""

from __future__ import annotations

from pathlib import Path

from prunescope.errors import UserInputError
from prunescope.pretrained.detect import CONFIG, SAEFiles
from prunescope.pretrained.encoders import Encoding
from prunescope.pretrained.reading import TensorNames, dictionary_tensors, read_weights

GEMMA_SCOPE_TENSORS = TensorNames("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
GEMMA_SCOPE_2_TENSORS = TensorNames("w_enc", "w_dec", "b_enc", "b_dec", "threshold")


def read_gemma_scope(files: SAEFiles, names: TensorNames) -> tuple[dict, Encoding, dict]:
    """Gemma Scope (1 and 2): JumpReLU on the raw activations, b_dec only in the decoder."""
    tensors = dictionary_tensors(read_weights(files.weights), names, files.weights)
    d_sae = tensors["W_enc"].shape[1]
    info = {}
    if "config.json" in files.configs:
        info = gemma_scope_config(
            files.configs["config.json"], files.config_path("config.json"), d_sae
        )
    return tensors, Encoding("jumprelu"), info


def gemma_scope_config(config: dict, path: Path, d_sae: int) -> dict:
    """What a Gemma Scope 2 ``config.json`` says (hooks, model, width, l0), once checked to
    describe a plain JumpReLU SAE of this width: transcoders, affine skip connections and
    other architectures are refused, naming the key."""
    architecture = config.get("architecture", "jump_relu")
    if str(architecture).lower().replace("_", "") != "jumprelu":
        raise UserInputError(
            f"{CONFIG} {path} says architecture={architecture!r}; Gemma Scope SAEs are read "
            "as JumpReLU (jump_relu) only"
        )
    if config.get("width", d_sae) != d_sae:
        raise UserInputError(
            f"{CONFIG} {path} says width={config['width']!r} but the weights beside it have "
            f"d_sae={d_sae}, so the two do not belong together"
        )
    kind = config.get("type", "sae")
    if kind != "sae":
        raise UserInputError(
            f"{CONFIG} {path} says type={kind!r}: it does not reconstruct the activations it "
            "reads, and survival needs an SAE (type 'sae')"
        )
    hook_in, hook_out = config.get("hf_hook_point_in"), config.get("hf_hook_point_out")
    if None not in (hook_in, hook_out) and hook_in != hook_out:
        raise UserInputError(
            f"{CONFIG} {path} says it reads {hook_in} but writes {hook_out}, so it does not "
            "reconstruct the activations it reads, and survival needs an SAE"
        )
    if config.get("affine_connection"):
        raise UserInputError(
            f"{CONFIG} {path} says affine_connection=true: its output adds an affine map of "
            "its input, so it is no plain SAE"
        )
    keep = ("model_name", "hf_hook_point_in", "width", "l0", "type")
    return {name: config[name] for name in keep if name in config}
