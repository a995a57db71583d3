"""Loading an SAE in any of the layouts read here as a ``PretrainedSAE``."""

from __future__ import annotations

from pathlib import Path

import torch

from prunescope.errors import UserInputError
from prunescope.models import pick_device
from prunescope.pretrained.detect import SAEFiles, find_sae_files, layout_of
from prunescope.pretrained.encoders import DictionarySAE, PretrainedSAE, PrunescopeSAE
from prunescope.pretrained.gemma_scope import (
    GEMMA_SCOPE_2_TENSORS,
    GEMMA_SCOPE_TENSORS,
    read_gemma_scope,
)
from prunescope.pretrained.saelens import read_saelens
from prunescope.pretrained.source import (
    SAESource,
    corruption_told_for,
    led_by_key,
    resolve_sae_source,
)
from prunescope.pretrained.sparsify import read_sparsify
from prunescope.sae import load_sae

READERS = {
    "gemma_scope": lambda files: read_gemma_scope(files, GEMMA_SCOPE_TENSORS),
    "gemma_scope_2": lambda files: read_gemma_scope(files, GEMMA_SCOPE_2_TENSORS),
    "saelens": read_saelens,
    "sparsify": read_sparsify,
}


def load_pretrained_sae(
    spec, device: torch.device | str = "cpu", d_model: int | None = None, key: str | None = None
) -> PretrainedSAE:
    """The SAE that ``spec`` names (see ``resolve_sae_source``), on ``device``, computing in
    float32 whatever dtype its weights are stored in.

    With ``d_model``, an SAE that reads activations of another width is refused, naming
    both. ``key`` is the config key that named the SAE: every error then starts with it.
    """
    source = resolve_sae_source(spec, key)
    device = pick_device(device) if isinstance(device, str) else device
    with led_by_key(key), corruption_told_for(source):
        files = find_sae_files(source.local)
        fmt = layout_of(files)
        if fmt == "prunescope":
            sae = _prunescope(files, source, device)
        else:
            tensors, encoding, info = READERS[fmt](files)
            sae = DictionarySAE(fmt, source, tensors, encoding, info, device)
        if d_model is not None and sae.d_model != d_model:
            raise UserInputError(
                f"SAE {source.describe()} ({fmt}) reads activations of width "
                f"d_model={sae.d_model}, but the activations it is to encode have width "
                f"{d_model}; it was trained on another model or layer"
            )
        return sae.eval()


def _prunescope(files: SAEFiles, source: SAESource, device: torch.device) -> PrunescopeSAE:
    sae = load_sae(files.weights.parent, device)
    provenance = files.configs["cfg.json"].get("provenance")
    return PrunescopeSAE(sae, source, {"k": sae.k, "provenance": provenance or {}})


def load_dictionary(path, device: torch.device | str = "cpu") -> PretrainedSAE:
    """The SAE in a folder (or the folder of a file ``path`` names): a prunescope SAE trained
    here, or the copy of a pretrained one that ``import_pretrained_sae`` wrote."""
    path = Path(path)
    return load_pretrained_sae(path if path.is_dir() else path.parent, device)
