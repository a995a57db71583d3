"""Which layout an SAE's files follow, told from its tensor names and config keys alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prunescope.artifacts import read_safetensors_header, reading
from prunescope.errors import UserInputError, listed
from prunescope.io import read_json

FORMATS = ("gemma_scope", "gemma_scope_2", "saelens", "sparsify", "prunescope")
WEIGHT_FILES = ("params.npz", "params.safetensors", "sae_weights.safetensors", "sae.safetensors")
"""Where each layout keeps its weights; a folder must hold exactly one of them."""
CONFIG_FILES = ("cfg.json", "config.json")
WEIGHTS = "SAE weights file"
CONFIG = "SAE config"
LAYOUTS_TOLD = (
    "Gemma Scope params.npz, Gemma Scope 2 params.safetensors, SAELens cfg.json + "
    "sae_weights.safetensors, sparsify cfg.json + sae.safetensors, or a prunescope SAE folder"
)


@dataclass(frozen=True)
class SAEFiles:
    """The weights file of an SAE, the names of its tensors and the configs beside it
    (file name -> parsed JSON object)."""

    weights: Path
    tensor_names: tuple[str, ...]
    configs: dict[str, dict] = field(default_factory=dict)

    def config_path(self, name: str) -> Path:
        return self.weights.parent / name


def find_sae_files(path) -> SAEFiles:
    """The files of the SAE at a local ``path``: a weights file, or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        weights = _weights_file_in(path)
    elif path.is_file():
        weights = path
    else:
        raise FileNotFoundError(f"SAE {path} does not exist")
    return SAEFiles(weights, _tensor_names(weights), _read_configs(weights.parent))


def _weights_file_in(folder: Path) -> Path:
    present = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if len(present) == 1:
        return present[0]
    if present:
        raise UserInputError(
            f"SAE folder {folder} holds several weights files ({listed([p.name for p in present])}"
            "); point at the one meant"
        )
    held = sorted(p.name for p in folder.iterdir())
    holding = f"it holds {listed(held, shown=6)}" if held else "it is empty"
    raise UserInputError(
        f"SAE folder {folder} holds no SAE weights file (none of {', '.join(WEIGHT_FILES)}); "
        f"{holding}"
    )


def _tensor_names(weights: Path) -> tuple[str, ...]:
    """Names of the tensors in a weights file, from its header or zip index alone."""
    if weights.suffix == ".npz":
        with reading(weights, WEIGHTS), np.load(weights, allow_pickle=False) as archive:
            return tuple(archive.files)
    if weights.suffix == ".safetensors":
        shapes, _ = read_safetensors_header(weights, WEIGHTS)
        return tuple(shapes)
    raise UserInputError(
        f"{WEIGHTS} {weights} is neither .npz nor .safetensors; an SAE is one of: {LAYOUTS_TOLD}"
    )


def _read_configs(folder: Path) -> dict[str, dict]:
    configs = {}
    for name in CONFIG_FILES:
        path = folder / name
        if path.is_file():
            config = read_json(path, CONFIG)
            if not isinstance(config, dict):
                raise UserInputError(f"{CONFIG} {path} is not a JSON object")
            configs[name] = config
    return configs


def detect_format(path) -> str:
    """Which of ``FORMATS`` the SAE at a local ``path`` (weights file or folder) is in,
    read from its tensor names and config keys; an unknown layout is refused naming them."""
    return layout_of(find_sae_files(path))


def layout_of(files: SAEFiles) -> str:
    """Which of ``FORMATS`` the SAE ``files`` are in; an unknown layout is refused naming
    its tensors and config keys."""
    found = _classify(files)
    if found is None:
        raise _unknown_layout(files)
    return found


def _classify(files: SAEFiles) -> str | None:
    names = set(files.tensor_names)
    cfg = files.configs.get("cfg.json")
    if cfg is not None and {"mean", "std"} <= names and {"d_model", "d_sae", "k"} <= cfg.keys():
        return "prunescope"
    if "encoder.weight" in names and cfg is not None:
        return "sparsify"
    if "w_enc" in names:
        return "gemma_scope_2"
    if "W_enc" in names and cfg is not None and "d_in" in cfg:
        return "saelens"
    # Without cfg.json, SAELens JumpReLU tensors look just like Gemma Scope's, and reading
    # one as the other silently drops apply_b_dec_to_input: only an .npz (which SAELens
    # never writes) or a Gemma Scope config.json settles it.
    gemma_evidence = files.weights.suffix == ".npz" or "config.json" in files.configs
    if "W_enc" in names and cfg is None and gemma_evidence:
        return "gemma_scope"
    return None


def _unknown_layout(files: SAEFiles) -> UserInputError:
    configs = "; ".join(
        f"{name} has the keys {listed(sorted(config), shown=8)}"
        for name, config in files.configs.items()
    )
    beside = f" ({configs})" if configs else " (with no cfg.json or config.json beside it)"
    return UserInputError(
        f"{WEIGHTS} {files.weights} holds the tensors "
        f"{listed(sorted(files.tensor_names), shown=8)}{beside}, which matches no SAE layout "
        f"prunescope reads: {LAYOUTS_TOLD}"
    )
