"""Pretrained SAEs researchers already have, loaded as encoders that survival can use.

Five layouts are read, each told apart by the names of its tensors and the keys of its
config, never by file names (prunescope's own folder and a sparsify folder both hold
``cfg.json`` + ``sae.safetensors``):

- ``gemma_scope``: Gemma Scope for Gemma 2, ``params.npz`` with ``W_enc (d_model, d_sae)``,
  ``W_dec``, ``b_enc``, ``b_dec``, ``threshold`` and no config;
- ``gemma_scope_2``: Gemma Scope 2 for Gemma 3, ``params.safetensors`` with the same
  tensors in lower case (``w_enc``, ``w_dec``, ...) and a ``config.json`` beside it;
- ``saelens``: a folder as SAELens ``save_model`` writes it, ``cfg.json`` (``d_in``,
  ``d_sae``, ``architecture``, ...) + ``sae_weights.safetensors``;
- ``sparsify``: an EleutherAI sparsify folder, ``cfg.json`` (``d_in``, ``k``, ...) +
  ``sae.safetensors`` with ``encoder.weight (num_latents, d_in)``, ``encoder.bias``,
  ``W_dec``, ``b_dec``;
- ``prunescope``: a folder written by ``prunescope.sae.save_sae``.

Every SAE encodes activations exactly as the model produced them and returns dense,
non-negative ``(rows, d_sae)`` float32 latents, whatever dtype its weights were stored in.
A setting whose effect cannot be reproduced from the files (an input scaling factor that
was never folded into the weights, a transcoder read as an SAE) is refused by name rather
than approximated, since a survival number from a subtly different encoder looks the same
as a correct one.

- ``source``: where the files are (a local path or a hub folder), downloads included.
- ``detect``: which layout the files follow.
- ``encoders``: the SAE modules and the activations they use.
- ``reading``: what every layout's reader shares (weights, tensor names, config values).
- ``gemma_scope``, ``saelens``, ``sparsify``: one reader per layout family.
- ``load``: an SAE in any layout, loaded.
- ``imports``: an SAE copied into the workflow with ``source.json``, and read back.
"""

from prunescope.pretrained.detect import FORMATS, SAEFiles, detect_format, find_sae_files
from prunescope.pretrained.encoders import (
    DictionarySAE,
    Encoding,
    PretrainedSAE,
    PrunescopeSAE,
    activate,
    group_max_relu,
    jump_relu,
    normalise_rows,
    top_k_relu,
)
from prunescope.pretrained.imports import import_pretrained_sae, load_imported_sae
from prunescope.pretrained.load import load_dictionary, load_pretrained_sae
from prunescope.pretrained.source import SAESource, resolve_sae_source

__all__ = [
    "FORMATS",
    "DictionarySAE",
    "Encoding",
    "PretrainedSAE",
    "PrunescopeSAE",
    "SAEFiles",
    "SAESource",
    "activate",
    "detect_format",
    "find_sae_files",
    "group_max_relu",
    "import_pretrained_sae",
    "jump_relu",
    "load_dictionary",
    "load_imported_sae",
    "load_pretrained_sae",
    "normalise_rows",
    "resolve_sae_source",
    "top_k_relu",
]
