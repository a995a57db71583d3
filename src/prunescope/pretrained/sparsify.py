"""EleutherAI sparsify folders (``cfg.json`` + ``sae.safetensors``): TopK and GroupMax SAEs
on the input minus ``b_dec``."""

from __future__ import annotations

from prunescope.errors import UserInputError
from prunescope.pretrained import reading
from prunescope.pretrained.detect import CONFIG, SAEFiles
from prunescope.pretrained.encoders import Encoding

SPARSIFY_TENSORS = reading.TensorNames(
    "encoder.weight", "W_dec", "encoder.bias", "b_dec", encoder_transposed=True
)


def read_sparsify(files: SAEFiles) -> tuple[dict, Encoding, dict]:
    """An EleutherAI sparsify SAE: ``TopK(ReLU(encoder(x - b_dec)))`` (or one per group,
    "groupmax"); transcoders, skip connections and signed latents are refused."""
    cfg, cfg_path = files.configs["cfg.json"], files.config_path("cfg.json")
    for name, meaning in (
        ("transcode", "a transcoder, whose encoder does not read the activations it rebuilds"),
        ("skip_connection", "its reconstruction adds a skip connection (W_skip)"),
        ("signed", "its latents may be negative"),
    ):
        if reading.config_flag(cfg, name, False, cfg_path):
            raise UserInputError(
                f"{CONFIG} {cfg_path} says {name}=true: {meaning}; survival needs a plain SAE"
            )
    raw = reading.read_weights(files.weights)
    tensors = reading.dictionary_tensors(raw, SPARSIFY_TENSORS, files.weights)
    d_model, d_sae = tensors["W_enc"].shape
    declared = {"d_in": d_model}
    if cfg.get("num_latents"):
        declared["num_latents"] = d_sae
    elif "expansion_factor" in cfg and "d_in" in cfg:
        declared["expansion_factor"] = d_sae / d_model
    reading.check_declared_sizes(cfg, cfg_path, declared, files.weights)
    activation = cfg.get("activation", "topk")
    if activation not in ("topk", "groupmax"):
        raise UserInputError(
            f"{CONFIG} {cfg_path} says activation={activation!r}; sparsify SAEs are read with "
            "topk or groupmax only"
        )
    k = reading.latent_count(cfg.get("k"), "k", cfg_path, d_sae)
    if activation == "groupmax" and d_sae % k:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says activation='groupmax' with k={k}, which does not "
            f"divide the {d_sae} latents into equal groups"
        )
    return tensors, Encoding(activation, k=k, subtract_b_dec=True), {"activation": activation}
