"""Pretrained SAEs brought into the workflow: their files copied under results/ with
``source.json``, and read back from there."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from prunescope.artifacts import require_file
from prunescope.errors import UserInputError
from prunescope.io import atomic_path, read_json, write_json
from prunescope.pretrained.detect import find_sae_files
from prunescope.pretrained.encoders import PretrainedSAE
from prunescope.pretrained.load import load_pretrained_sae

SOURCE_RECORD = "source.json"
"""Beside an imported SAE's files: its label, format, widths and where it came from."""


def import_pretrained_sae(
    spec, out_dir, *, label: str, d_model: int | None = None, key: str | None = None
) -> dict:
    """Load the SAE ``spec`` names (every check of ``load_pretrained_sae`` passed, its width
    against ``d_model``), then copy its weights and configs into ``out_dir`` with
    ``source.json``, the record returned: what the analyses read, the same bytes whatever
    becomes of the hub cache or the original folder later.

    ``out_dir`` appears whole or not at all.
    """
    sae = load_pretrained_sae(spec, "cpu", d_model=d_model, key=key)
    files = find_sae_files(sae.source.local)
    record = {
        "label": label,
        **sae.provenance(),
        "weights_file": files.weights.name,
        "weights_sha256": _sha256(files.weights),
    }
    with atomic_path(out_dir) as staging:
        staging.mkdir()
        shutil.copyfile(files.weights, staging / files.weights.name)
        for name in files.configs:
            shutil.copyfile(files.config_path(name), staging / name)
        # last: a folder holding it is a finished copy
        write_json(staging / SOURCE_RECORD, record)
    return record


def load_imported_sae(
    folder, device: torch.device | str = "cpu", d_model: int | None = None
) -> tuple[PretrainedSAE, dict]:
    """The SAE ``import_pretrained_sae`` copied into ``folder``, and its record. With
    ``d_model``, activations of another width are refused naming the SAE as configured."""
    folder = Path(folder)
    record = read_json(
        require_file(folder / SOURCE_RECORD, "pretrained SAE record"), "pretrained SAE record"
    )
    sae = load_pretrained_sae(folder, device)
    if d_model is not None and sae.d_model != d_model:
        raise UserInputError(
            f"pretrained SAE {record.get('label')!r} ({sae.format}) reads activations of width "
            f"d_model={sae.d_model}, but these activations have width {d_model}; it was "
            "trained on another model or layer"
        )
    return sae, record


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
