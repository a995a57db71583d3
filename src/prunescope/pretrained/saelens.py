"""SAELens folders (``cfg.json`` + ``sae_weights.safetensors``) as SAELens 5 and 6 write
them: standard, topk and jumprelu SAEs."""

from __future__ import annotations

from pathlib import Path

from prunescope.errors import UserInputError
from prunescope.pretrained.detect import CONFIG, WEIGHTS, SAEFiles
from prunescope.pretrained.encoders import Encoding
from prunescope.pretrained.gemma_scope import GEMMA_SCOPE_TENSORS
from prunescope.pretrained.reading import (
    TensorNames,
    check_declared_sizes,
    config_flag,
    dictionary_tensors,
    latent_count,
    read_weights,
)

SAELENS_TENSORS = TensorNames("W_enc", "W_dec", "b_enc", "b_dec")
SAELENS_JUMPRELU_TENSORS = GEMMA_SCOPE_TENSORS

SAELENS_ARCHITECTURES = ("standard", "topk", "jumprelu")
UNFOLDED_SCALING = (
    "its inputs were multiplied by a dataset-wide factor that neither cfg.json nor the "
    "weights carry (SAELens folds it into the weights when training ends and writes "
    "'none'), so its latents cannot be reproduced; fold the factor in "
    "(SAE.fold_activation_norm_scaling_factor) and save it again"
)


def read_saelens(files: SAEFiles) -> tuple[dict, Encoding, dict]:
    """A SAELens folder: standard (ReLU), topk or jumprelu, as SAELens 6 ``save_model``
    writes it (training settings and ``metadata`` beside the architecture keys), or as
    SAELens 5 wrote it (all keys at the top, ``activation_fn`` topk for TopK SAEs)."""
    cfg, cfg_path = files.configs["cfg.json"], files.config_path("cfg.json")
    architecture = saelens_architecture(cfg, cfg_path)
    names = SAELENS_JUMPRELU_TENSORS if architecture == "jumprelu" else SAELENS_TENSORS
    raw = read_weights(files.weights)
    if architecture != "jumprelu" and "threshold" in raw:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says architecture={architecture!r} but {files.weights} "
            "holds a JumpReLU threshold, so the two contradict each other"
        )
    _refuse_latent_scaling(raw, cfg, files.weights)
    tensors = dictionary_tensors(raw, names, files.weights, spare=("scaling_factor",))
    d_model, d_sae = tensors["W_enc"].shape
    check_declared_sizes(cfg, cfg_path, {"d_in": d_model, "d_sae": d_sae}, files.weights)
    encoding = Encoding(
        activation={"standard": "relu"}.get(architecture, architecture),
        k=saelens_k(cfg, cfg_path, d_sae) if architecture == "topk" else None,
        subtract_b_dec=config_flag(cfg, "apply_b_dec_to_input", True, cfg_path),
        row_norm=saelens_row_norm(cfg, cfg_path),
        rescale_by_decoder_norm=config_flag(cfg, "rescale_acts_by_decoder_norm", False, cfg_path),
    )
    return tensors, encoding, saelens_info(cfg, architecture)


def saelens_architecture(cfg: dict, cfg_path: Path) -> str:
    """standard, topk or jumprelu; SAELens 5 wrote TopK SAEs as architecture "standard"
    (or none) with activation_fn "topk", and SAELens 6 reads them as topk too."""
    architecture = cfg.get("architecture") or "standard"
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    if architecture == "standard" and activation == "topk":
        return "topk"
    if architecture not in SAELENS_ARCHITECTURES:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says architecture={architecture!r}; SAELens SAEs are read "
            f"as {', '.join(SAELENS_ARCHITECTURES)} only"
        )
    if architecture == "standard" and activation not in (None, "relu"):
        raise UserInputError(
            f"{CONFIG} {cfg_path} says activation_fn={activation!r}; a standard SAELens SAE "
            "is read with ReLU only"
        )
    return architecture


def saelens_k(cfg: dict, cfg_path: Path, d_sae: int) -> int:
    k = cfg.get("k")
    if k is None:
        k = (cfg.get("activation_fn_kwargs") or {}).get("k")
    return latent_count(k, "k", cfg_path, d_sae)


def saelens_row_norm(cfg: dict, cfg_path: Path) -> str:
    """The per-row normalisation to apply, or a refusal of a setting that cannot be
    reproduced; SAELens 5 wrote a bool (true meaning expected_average_only_in)."""
    setting = cfg.get("normalize_activations")
    if setting in (None, False, "none"):
        return "none"
    if setting is True or setting == "expected_average_only_in":
        raise UserInputError(
            f"{CONFIG} {cfg_path} says normalize_activations='expected_average_only_in': "
            + UNFOLDED_SCALING
        )
    if setting in ("constant_norm_rescale", "layer_norm"):
        return setting
    raise UserInputError(
        f"{CONFIG} {cfg_path} says normalize_activations={setting!r}, which SAELens does not "
        "define (none, expected_average_only_in, constant_norm_rescale, layer_norm)"
    )


def _refuse_latent_scaling(raw: dict, cfg: dict, weights: Path) -> None:
    """SAELens 5's finetuning scaling factor multiplies the latents; a stored factor of all
    ones (SAELens wrote one for a while) changes nothing and is dropped."""
    factor = raw.get("scaling_factor")
    if cfg.get("finetuning_scaling_factor") or (
        factor is not None and not bool((factor == 1).all())
    ):
        raise UserInputError(
            f"{WEIGHTS} {weights} carries a finetuning scaling_factor (SAELens 5) that "
            "multiplies its latents; such SAEs are not read here"
        )


def saelens_info(cfg: dict, architecture: str) -> dict:
    """Hook, model and version, from SAELens 6's ``metadata`` or SAELens 5's top level."""
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    info = {"architecture": architecture}
    for name in ("model_name", "hook_name", "sae_lens_version"):
        value = metadata.get(name, cfg.get(name))
        if value is not None:
            info[name] = value
    return info
