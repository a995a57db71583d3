"""An SAE's folder on disk: sae.safetensors (weights and normalisation) and cfg.json."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from prunescope.artifacts import damaged, read_safetensors, require_file
from prunescope.io import atomic_path, read_json, write_json
from prunescope.sae.model import TopKSAE
from prunescope.settings import SAEConfig

NORMALISATION = (
    "x_hat = (x - mean) / std per dimension, mean/std (float64, from the activation cache) "
    "stored in sae.safetensors; encode/decode work on x_hat, x_rec = x_hat_rec * std + mean"
)

SAE_FILES = ("sae.safetensors", "cfg.json", "metrics.json")


def check_sae_folder(out_dir: Path) -> None:
    """Refuse a folder holding anything but an SAE's own files: it is replaced whole."""
    if out_dir.is_dir():
        others = sorted({p.name for p in out_dir.iterdir()} - set(SAE_FILES))
        if others:
            raise ValueError(
                f"SAE folder {out_dir} also holds {others}; train into a new or empty folder"
            )


def save_sae(sae: TopKSAE, cfg: SAEConfig, out_dir, provenance: dict | None = None) -> None:
    """Write ``sae.safetensors`` and ``cfg.json`` into ``out_dir``, each atomically."""
    out_dir = Path(out_dir)
    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.state_dict().items()}
    with atomic_path(out_dir / "sae.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(
        out_dir / "cfg.json",
        {
            **asdict(cfg),
            "d_model": sae.d_model,
            "d_sae": sae.d_sae,
            "normalisation": NORMALISATION,
            "provenance": provenance or {},
        },
    )


def load_sae(directory, device: torch.device | str = "cpu") -> TopKSAE:
    """The SAE saved by ``train_sae``/``save_sae`` in ``directory``.

    A missing, truncated or corrupt ``cfg.json`` or ``sae.safetensors``, or a pair that does
    not belong together, raises an error naming the file, before any tensor is used.
    """
    directory = Path(directory)
    cfg_path = require_file(directory / "cfg.json", "SAE config")
    weights_path = require_file(directory / "sae.safetensors", "SAE weights file")
    cfg = read_json(cfg_path, "SAE config")
    try:
        d_model, d_sae, k = (int(cfg[key]) for key in ("d_model", "d_sae", "k"))
        sae = TopKSAE(d_model, d_sae, k)
    except (KeyError, TypeError, ValueError) as err:
        raise damaged("SAE config", cfg_path, f"lacks a valid d_model/d_sae/k ({err})") from err
    tensors, _ = read_safetensors(weights_path, "SAE weights file")
    expected = {name: tuple(t.shape) for name, t in sae.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if found != expected:
        raise damaged(
            "SAE weights file",
            weights_path,
            f"has tensors {found} but {cfg_path.name} beside it describes {expected}, so "
            "the two do not belong together",
        )
    sae.load_state_dict(tensors)
    return sae.to(torch.device(device)).eval()
