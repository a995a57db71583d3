"""What every layout's reader shares: its weights file read, the dictionary's tensors picked
by name with their shapes checked, and the sizes and flags its config states."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunescope.artifacts import damaged, nan_or_inf, read_npz, read_safetensors
from prunescope.errors import UserInputError, listed
from prunescope.pretrained.detect import CONFIG, WEIGHTS


@dataclass(frozen=True)
class TensorNames:
    """Where a layout keeps each weight; ``encoder_transposed``: stored (d_sae, d_model)."""

    encoder: str
    decoder: str
    b_enc: str
    b_dec: str
    threshold: str | None = None
    encoder_transposed: bool = False


def read_weights(weights: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an .npz or .safetensors file, on the CPU; NaN/Inf is refused."""
    if weights.suffix != ".npz":
        tensors, _ = read_safetensors(weights, WEIGHTS)
        return tensors
    arrays = read_npz(weights, WEIGHTS)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            problem = f"has {nan_or_inf(tensor)} in tensor {name!r}, so it is corrupt"
            raise damaged(WEIGHTS, weights, problem)
    return tensors


def dictionary_tensors(
    tensors: dict[str, torch.Tensor], names: TensorNames, weights: Path, spare=()
) -> dict[str, torch.Tensor]:
    """The weights under prunescope's names (``W_enc`` as (d_model, d_sae)), after checking
    that each is there with the shape the encoder implies and that nothing else is (bar the
    ``spare`` tensors the caller deals with): a tensor no layout uses may change what the
    SAE computes, and this loader would silently leave it out."""
    wanted = {
        "W_enc": names.encoder,
        "W_dec": names.decoder,
        "b_enc": names.b_enc,
        "b_dec": names.b_dec,
    }
    if names.threshold is not None:
        wanted["threshold"] = names.threshold
    missing = [stored for stored in wanted.values() if stored not in tensors]
    if missing:
        raise UserInputError(
            f"{WEIGHTS} {weights} lacks the tensors {listed(missing)} (it holds "
            f"{listed(sorted(tensors), shown=8)}), so it is no complete SAE"
        )
    extra = sorted(set(tensors) - set(wanted.values()) - set(spare))
    if extra:
        raise UserInputError(
            f"{WEIGHTS} {weights} holds the tensors {listed(extra)}, which the layout it "
            f"follows has no use for (it needs {', '.join(wanted.values())})"
        )
    encoder = tensors[names.encoder]
    if encoder.ndim != 2:
        raise UserInputError(
            f"{WEIGHTS} {weights} has {names.encoder} of shape {tuple(encoder.shape)}, not a matrix"
        )
    picked = {name: tensors[stored] for name, stored in wanted.items()}
    if names.encoder_transposed:
        picked["W_enc"] = encoder.T
    check_dictionary_shapes(picked, wanted, tuple(encoder.shape), weights)
    return picked


def check_dictionary_shapes(
    tensors: dict[str, torch.Tensor], stored: dict[str, str], encoder_shape, weights: Path
) -> None:
    """Refuse a decoder, bias or threshold whose shape the encoder does not imply;
    ``stored`` maps prunescope's names to the file's and ``encoder_shape`` is the encoder's
    shape in the file, both for the message."""
    d_model, d_sae = tensors["W_enc"].shape
    expected = {
        "W_dec": (d_sae, d_model),
        "b_enc": (d_sae,),
        "b_dec": (d_model,),
        "threshold": (d_sae,),
    }
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise UserInputError(
                f"{WEIGHTS} {weights} has {stored[name]} of shape {tuple(tensors[name].shape)}"
                f", but its encoder {stored['W_enc']} of shape {encoder_shape} makes "
                f"d_model={d_model} and d_sae={d_sae}, so it should be {shape}"
            )


def check_declared_sizes(cfg: dict, cfg_path: Path, found: dict, weights: Path) -> None:
    """Refuse a config whose sizes (when it states them) contradict the weights."""
    for name, value in found.items():
        if name in cfg and cfg[name] != value:
            raise UserInputError(
                f"{CONFIG} {cfg_path} says {name}={cfg[name]!r} but {weights} implies "
                f"{name}={value:g}, so the two do not belong together"
            )


def config_flag(cfg: dict, name: str, default: bool, cfg_path: Path) -> bool:
    """A true/false setting of ``cfg``: ``default`` when absent or null, refused otherwise."""
    value = cfg.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UserInputError(f"{CONFIG} {cfg_path} says {name}={value!r}, not true or false")
    return value


def latent_count(value, name: str, cfg_path: Path, d_sae: int) -> int:
    """A whole number of latents between 1 and d_sae (SAELens may write k as 32.0)."""
    whole = isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)
    if value is None or not whole or not 1 <= int(value) <= d_sae:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says {name}={value!r}; it must be a whole number of latents "
            f"between 1 and d_sae={d_sae}"
        )
    return int(value)
