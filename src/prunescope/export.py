"""Export a prunescope TopK SAE as a folder SAELens opens with ``SAE.load_from_disk``.

prunescope's ``TopKSAE`` works in the standardised space ``x_hat = (x - mean) / std``::

    pre   = W_enc x_hat + b_enc                      (no b_dec subtracted first)
    z     = ReLU(TopK(pre, k))                       (top k, then ReLU on the kept values)
    x_rec = (W_dec^T z + b_dec) * std + mean

SAELens's ``topk`` SAE (6.x, ``normalize_activations="none"``,
``rescale_acts_by_decoder_norm=False``) works on raw activations::

    pre   = (x - b_dec' * apply_b_dec_to_input) @ W_enc' + b_enc'
    z     = ReLU(TopK(pre, k))                       (top k, then ReLU, zeros elsewhere)
    x_rec = z @ W_dec' + b_dec'

Both maps are affine around the same TopK, so the standardisation folds into the weights
exactly (computed in float64, then cast to the exported dtype). With
``apply_b_dec_to_input = True``, ``s = std`` and ``m = mean``::

    W_dec' = W_dec * s                (each output dimension i scaled by s_i; (d_sae, d_in))
    b_dec' = b_dec * s + m
    W_enc' = (W_enc / s)^T            (each input dimension i scaled by 1 / s_i; (d_in, d_sae))
    b_enc' = b_enc + W_enc b_dec

since ``(x - b_dec') @ W_enc' = ((x - m) / s - b_dec) @ W_enc^T``. The input is thus centred
by a subtraction before the matmul, as prunescope itself does. (``apply_b_dec_to_input =
False`` with ``b_enc' = b_enc - W_enc (m / s)`` is the same map in exact arithmetic, but in
float32 it subtracts the mean after the matmul, which loses digits when ``|mean| / std`` is
large, as it is in residual-stream dimensions with massive activations.) The exported
decoder rows are no longer unit-norm, which is why ``rescale_acts_by_decoder_norm`` must
stay False: it would change which latents are in the top k.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from prunescope.errors import UserInputError
from prunescope.io import atomic_path, read_json, write_json
from prunescope.sae import NORMALISATION, TopKSAE, load_sae

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_FILES = (SAELENS_CFG, SAELENS_WEIGHTS)
SAELENS_FORMAT_VERSION = "6.54.12"
"""The SAELens release whose folder format this writes (and the tests load with). Written as
``metadata.sae_lens_version``: SAELens treats a folder without a version >= 6.0 as an old
(5.x) config and renames and drops keys from it."""
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
FOLDING = (
    "prunescope's per-dimension standardisation (x - mean) / std is folded into the weights "
    "(W_enc' = (W_enc / std)^T, b_enc' = b_enc + W_enc b_dec, W_dec' = W_dec * std, "
    "b_dec' = b_dec * std + mean, apply_b_dec_to_input = true), so this SAE takes the raw "
    "activations"
)


@torch.no_grad()
def folded_weights(sae: TopKSAE) -> dict[str, torch.Tensor]:
    """SAELens ``topk`` weights (float64, CPU) that compute on raw activations exactly what
    ``sae`` computes with its normalisation, for ``apply_b_dec_to_input = True``.

    Keys and shapes follow SAELens: ``W_enc`` (d_in, d_sae), ``b_enc`` (d_sae,), ``W_dec``
    (d_sae, d_in), ``b_dec`` (d_in,).
    """
    W_enc, b_enc, W_dec, b_dec, mean, std = (
        t.detach().to("cpu", torch.float64)
        for t in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, sae.mean, sae.std)
    )
    if not bool((std > 0).all()) or not all(
        bool(torch.isfinite(t).all()) for t in (W_enc, b_enc, W_dec, b_dec, mean, std)
    ):
        raise UserInputError(
            "the SAE has a non-finite weight or a non-positive std, so its normalisation "
            "cannot be folded into the weights"
        )
    return {
        "W_enc": (W_enc / std).T.contiguous(),
        "b_enc": b_enc + W_enc @ b_dec,
        "W_dec": (W_dec * std).contiguous(),
        "b_dec": b_dec * std + mean,
    }


def saelens_config(
    sae: TopKSAE,
    *,
    hook_name: str,
    model_name: str | None = None,
    dtype: str = "float32",
    metadata: dict | None = None,
) -> dict:
    """The ``cfg.json`` of a SAELens ``topk`` SAE equivalent to ``sae`` (see ``folded_weights``).

    ``metadata`` adds keys to SAELens's metadata block (e.g. ``hook_head_index``,
    ``context_size``, ``prepend_bos``); its keys override the ones set here.
    """
    if not isinstance(hook_name, str) or not hook_name:
        raise UserInputError(f"hook_name {hook_name!r} must be a non-empty string")
    if dtype not in DTYPES:
        raise UserInputError(f"dtype {dtype!r} must be one of {', '.join(DTYPES)}")
    block = {
        "sae_lens_version": SAELENS_FORMAT_VERSION,
        # not trained with SAELens: without this key SAELens would claim its own version
        "sae_lens_training_version": None,
        "hook_name": hook_name,
    }
    if model_name is not None:
        block["model_name"] = model_name
    block |= metadata or {}
    return {
        "architecture": "topk",
        "d_in": sae.d_model,
        "d_sae": sae.d_sae,
        "k": sae.k,
        "dtype": dtype,
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "rescale_acts_by_decoder_norm": False,
        "metadata": block,
    }


def export_saelens(
    sae_dir_or_sae: str | os.PathLike | TopKSAE,
    out_dir: str | os.PathLike,
    *,
    hook_name: str,
    model_name: str | None = None,
    dtype: str = "float32",
    metadata: dict | None = None,
    provenance: dict | None = None,
) -> Path:
    """Write ``out_dir`` as a SAELens ``topk`` SAE folder (``cfg.json`` and
    ``sae_weights.safetensors``) that runs on raw activations; return its path.

    ``sae_dir_or_sae`` is a folder written by ``train_sae``/``save_sae`` or a ``TopKSAE``.
    ``hook_name`` is SAELens's name of the activation the SAE reads (e.g.
    ``blocks.3.hook_resid_post`` for TransformerLens), ``model_name`` the model's name
    there. prunescope's own config (for a folder) and ``provenance`` go to
    ``metadata.prunescope``, a key SAELens keeps (and writes back on save) but does not use.

    The folder appears whole or not at all: a job killed while writing leaves only
    ``<out_dir>.partial``. An existing ``out_dir`` is replaced only when it holds nothing
    but the files written here.
    """
    ours: dict = {"normalisation": NORMALISATION, "folded": FOLDING}
    if isinstance(sae_dir_or_sae, TopKSAE):
        sae = sae_dir_or_sae
    else:
        source = Path(sae_dir_or_sae)
        sae = load_sae(source)
        ours |= {"source": str(source), "cfg": read_json(source / "cfg.json", "SAE config")}
    if provenance:
        ours["provenance"] = provenance
    cfg = saelens_config(
        sae,
        hook_name=hook_name,
        model_name=model_name,
        dtype=dtype,
        metadata={"prunescope": ours, **(metadata or {})},
    )
    tensors = {
        name: tensor.to(DTYPES[dtype]).contiguous() for name, tensor in folded_weights(sae).items()
    }
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as staging:
        staging.mkdir()
        save_file(tensors, str(staging / SAELENS_WEIGHTS))
        # cfg.json last: SAELens reads it first, so a folder with it is a finished one
        write_json(staging / SAELENS_CFG, cfg)
    return out_dir


__all__ = ["export_saelens", "folded_weights", "saelens_config"]
