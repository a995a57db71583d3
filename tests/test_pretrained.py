"""Pretrained SAEs in each layout, written as tiny files and checked against a forward pass
written out in numpy: Gemma Scope (params.npz), Gemma Scope 2 (params.safetensors +
config.json), SAELens and sparsify folders, and prunescope's own SAE folder; detection by
tensors and config keys; refusals by name; hub specs through an offline hub cache; imports
of each into the workflow with a record of where they came from."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from prunescope.errors import UserInputError
from prunescope.pretrained import (
    DictionarySAE,
    PrunescopeSAE,
    detect_format,
    import_pretrained_sae,
    load_dictionary,
    load_imported_sae,
    load_pretrained_sae,
    resolve_sae_source,
)
from prunescope.sae import SAEConfig, TopKSAE, load_sae, save_sae
from prunescope.survival import LatentEncoder, as_latent_encoder, encode_rows

D_MODEL, D_SAE, K = 8, 24, 4
ROWS = 12
KEY = "survival.sae"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# ----------------------------------------------------------------- tiny dictionaries


def dictionary(seed: int = 0, d_model: int = D_MODEL, d_sae: int = D_SAE) -> dict:
    """Random float32 weights in Gemma Scope / SAELens orientation, b_dec far from 0 so that
    subtracting it from the input or not gives clearly different latents."""
    rng = np.random.default_rng(seed)
    return {
        "W_enc": rng.normal(size=(d_model, d_sae)).astype(np.float32) * 0.5,
        "W_dec": rng.normal(size=(d_sae, d_model)).astype(np.float32) * 0.5,
        "b_enc": rng.normal(size=d_sae).astype(np.float32) * 0.2,
        "b_dec": rng.normal(size=d_model).astype(np.float32) + 1.0,
        "threshold": np.abs(rng.normal(size=d_sae)).astype(np.float32) * 0.4,
    }


def with_exact_threshold(weights: dict) -> dict:
    """Latent 0's pre-activation is exactly its threshold on every row (a zero encoder
    column and b_enc = threshold), so it must stay off; latent 1's is just above, so it
    must fire with exactly that value."""
    weights = {name: value.copy() for name, value in weights.items()}
    weights["W_enc"][:, :2] = 0.0
    weights["b_enc"][:2] = 0.25
    weights["threshold"][:2] = [0.25, 0.2499]
    return weights


def activations(seed: int = 1, rows: int = ROWS, d_model: int = D_MODEL) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, d_model)).astype(np.float32)


def save_tensors(path: Path, arrays: dict, dtype: torch.dtype = torch.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {name: torch.from_numpy(np.ascontiguousarray(a)).to(dtype) for name, a in arrays.items()},
        str(path),
    )
    return path


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def rounded_to(arrays: dict, dtype: torch.dtype) -> dict:
    """The weights as a file of ``dtype`` holds them, back in float32."""
    return {n: torch.from_numpy(a).to(dtype).float().numpy() for n, a in arrays.items()}


# ----------------------------------------------------------------- the reference in numpy


def np_pre(x, w, subtract_b_dec: bool):
    x = x.astype(np.float64)
    if subtract_b_dec:
        x = x - w["b_dec"]
    return x @ w["W_enc"].astype(np.float64) + w["b_enc"]


def np_jumprelu(pre, threshold):
    return pre * (pre > threshold)


def np_topk(pre, k):
    keep = np.argsort(-pre, axis=1)[:, :k]
    z = np.zeros_like(pre)
    np.put_along_axis(z, keep, np.maximum(np.take_along_axis(pre, keep, axis=1), 0), axis=1)
    return z


def np_groupmax(pre, k):
    relu = np.maximum(pre, 0)
    groups = relu.reshape(len(pre), k, -1)
    z = np.zeros_like(groups)
    best = groups.argmax(axis=2)
    np.put_along_axis(z, best[..., None], groups.max(axis=2)[..., None], axis=2)
    return z.reshape(pre.shape)


def np_decode(z, w):
    return z @ w["W_dec"].astype(np.float64) + w["b_dec"]


def encoded(sae, x: np.ndarray) -> np.ndarray:
    return sae.encode(torch.from_numpy(x)).numpy()


def assert_latents(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert ((actual > 0) == (expected > 0)).all(), "a different set of latents fires"
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- writers of each layout


def gemma_scope(folder: Path, weights: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", **(weights or dictionary()))
    return folder


GEMMA_SCOPE_2_CONFIG = {  # the keys of a real config.json of google/gemma-scope-2-1b-it
    "hf_hook_point_in": "model.layers.3.output",
    "hf_hook_point_out": "model.layers.3.output",
    "width": D_SAE,
    "model_name": "google/gemma-3-1b-it",
    "architecture": "jump_relu",
    "l0": 60,
    "affine_connection": False,
    "type": "sae",
}


def gemma_scope_2(folder: Path, weights=None, config=None, dtype=torch.float32) -> Path:
    weights = weights or dictionary()
    save_tensors(folder / "params.safetensors", {k.lower(): v for k, v in weights.items()}, dtype)
    if config is not False:
        write_json(folder / "config.json", {**GEMMA_SCOPE_2_CONFIG, **(config or {})})
    return folder


def saelens_cfg(architecture: str = "standard", **settings) -> dict:
    """cfg.json as SAELens 6 ``save_model`` writes it: sizes and settings at the top,
    hook and model under metadata, training leftovers beside them."""
    cfg = {
        "d_in": D_MODEL,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": "6.18.0",
            "sae_lens_training_version": "6.18.0",
            "hook_name": "blocks.3.hook_resid_post",
            "model_name": "tiny",
            "context_size": 128,
        },
        "decoder_init_norm": 0.1,
        "architecture": architecture,
    }
    if architecture == "topk":
        cfg |= {"k": K, "rescale_acts_by_decoder_norm": False}
    return {**cfg, **settings}


def saelens(folder: Path, cfg: dict | None = None, weights: dict | None = None) -> Path:
    cfg = cfg or saelens_cfg()
    weights = dict(weights or dictionary())
    if cfg.get("architecture") != "jumprelu":
        weights.pop("threshold", None)
    save_tensors(folder / "sae_weights.safetensors", weights)
    write_json(folder / "cfg.json", cfg)
    return folder


def sparsify_cfg(**settings) -> dict:
    """cfg.json as sparsify's ``save_to_disk`` writes it: its SparseCoderConfig and d_in."""
    cfg = {
        "activation": "topk",
        "expansion_factor": D_SAE // D_MODEL,
        "normalize_decoder": True,
        "num_latents": 0,
        "k": K,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D_MODEL,
    }
    return {**cfg, **settings}


def sparsify(folder: Path, cfg=None, weights=None, dtype=torch.float32) -> Path:
    weights = weights or dictionary()
    tensors = {
        "encoder.weight": weights["W_enc"].T,
        "encoder.bias": weights["b_enc"],
        "W_dec": weights["W_dec"],
        "b_dec": weights["b_dec"],
    }
    save_tensors(folder / "sae.safetensors", tensors, dtype)
    write_json(folder / "cfg.json", cfg or sparsify_cfg())
    return folder


def prunescope_sae(seed: int = 3) -> TopKSAE:
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(size=D_MODEL), rng.uniform(0.5, 2.0, size=D_MODEL)
    sae = TopKSAE(D_MODEL, D_SAE, K, mean, std, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_enc.copy_(torch.from_numpy(rng.normal(size=D_SAE)) * 0.1)
        sae.b_dec.copy_(torch.from_numpy(rng.normal(size=D_MODEL)) * 0.1)
    return sae


def prunescope(folder: Path) -> Path:
    save_sae(prunescope_sae(), SAEConfig(expansion=D_SAE // D_MODEL, k=K), folder, {"layer": 3})
    return folder


# ----------------------------------------------------------------- Gemma Scope


def test_gemma_scope_is_jumprelu_on_raw_activations(tmp_path):
    weights = with_exact_threshold(dictionary())
    sae = load_pretrained_sae(str(gemma_scope(tmp_path / "gs", weights)))
    x = activations()
    z = encoded(sae, x)

    assert_latents(z, np_jumprelu(np_pre(x, weights, False), weights["threshold"]))
    assert (z[:, 0] == 0).all(), "a pre-activation equal to its threshold must not fire"
    assert (z[:, 1] == np.float32(0.25)).all()
    # b_dec only enters the decoder: subtracting it from the input gives other latents
    subtracted = np_jumprelu(np_pre(x, weights, True), weights["threshold"])
    assert not np.allclose(z, subtracted, atol=1e-3)
    np.testing.assert_allclose(
        sae.decode(torch.from_numpy(z)).numpy(), np_decode(z, weights), rtol=1e-5, atol=1e-5
    )
    expected = np_decode(np_jumprelu(np_pre(x, weights, False), weights["threshold"]), weights)
    np.testing.assert_allclose(
        sae.reconstruct(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-5
    )
    assert (sae.format, sae.d_model, sae.d_sae) == ("gemma_scope", D_MODEL, D_SAE)


def test_gemma_scope_2_reads_lower_case_tensors_and_its_config(tmp_path):
    weights = with_exact_threshold(dictionary(seed=4))
    sae = load_pretrained_sae(gemma_scope_2(tmp_path / "gs2", weights))
    x = activations()
    z = encoded(sae, x)
    assert_latents(z, np_jumprelu(np_pre(x, weights, False), weights["threshold"]))
    assert (z[:, 0] == 0).all() and (z[:, 1] == np.float32(0.25)).all()
    assert sae.format == "gemma_scope_2"
    assert sae.info["hf_hook_point_in"] == "model.layers.3.output"
    assert sae.provenance()["model_name"] == "google/gemma-3-1b-it"


def test_gemma_scope_2_without_config_is_read_from_its_tensors(tmp_path):
    weights = dictionary(seed=5)
    sae = load_pretrained_sae(gemma_scope_2(tmp_path / "gs2", weights, config=False))
    x = activations()
    assert_latents(encoded(sae, x), np_jumprelu(np_pre(x, weights, False), weights["threshold"]))


def test_bf16_weights_are_computed_in_float32(tmp_path):
    weights = dictionary(seed=6)
    sae = load_pretrained_sae(gemma_scope_2(tmp_path / "gs2", weights, dtype=torch.bfloat16))
    stored = rounded_to(weights, torch.bfloat16)
    x = activations()
    z = sae.encode(torch.from_numpy(x).to(torch.bfloat16))

    assert sae.W_enc.dtype == torch.float32 and z.dtype == torch.float32
    bf16_x = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert_latents(z.numpy(), np_jumprelu(np_pre(bf16_x, stored, False), stored["threshold"]))


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"width": D_SAE * 2}, f"width={D_SAE * 2}"),
        ({"architecture": "topk"}, "architecture='topk'"),
        ({"type": "transcoder"}, "type='transcoder'"),
        ({"hf_hook_point_out": "model.layers.4.output"}, "but writes model.layers.4.output"),
        ({"affine_connection": True}, "affine_connection=true"),
    ],
)
def test_a_gemma_scope_2_config_that_contradicts_an_sae_is_refused(tmp_path, setting, named):
    folder = gemma_scope_2(tmp_path / "gs2", config=setting)
    with pytest.raises(UserInputError, match=re.escape(named)) as refusal:
        load_pretrained_sae(folder)
    assert str(folder / "config.json") in str(refusal.value)


# ----------------------------------------------------------------- SAELens


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_saelens_architectures_match_numpy(tmp_path, architecture, apply_b_dec):
    weights = with_exact_threshold(dictionary(seed=7))
    cfg = saelens_cfg(architecture, apply_b_dec_to_input=apply_b_dec)
    sae = load_pretrained_sae(saelens(tmp_path / "sl", cfg, weights))
    x = activations()
    reference = {
        "standard": lambda pre: np.maximum(pre, 0),
        "topk": lambda pre: np_topk(pre, K),
        "jumprelu": lambda pre: np_jumprelu(pre, weights["threshold"]),
    }[architecture]
    expected = reference(np_pre(x, weights, apply_b_dec))
    z = encoded(sae, x)

    assert_latents(z, expected)
    # the setting matters here: the other choice gives other latents
    assert not np.allclose(z, reference(np_pre(x, weights, not apply_b_dec)), atol=1e-3)
    if architecture == "topk":
        assert ((z > 0).sum(axis=1) <= K).all()
    expected_rec = np_decode(expected, weights)
    rec = sae.reconstruct(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rec, expected_rec, rtol=1e-5, atol=1e-5)
    assert sae.info == {
        "architecture": architecture,
        "model_name": "tiny",
        "hook_name": "blocks.3.hook_resid_post",
        "sae_lens_version": "6.18.0",
    }


def test_saelens_topk_rescaled_by_decoder_norm(tmp_path):
    weights = dictionary(seed=8)
    norms = np.linspace(0.2, 3.0, D_SAE).astype(np.float32)
    weights["W_dec"] = weights["W_dec"] / np.linalg.norm(weights["W_dec"], axis=1)[:, None]
    weights["W_dec"] *= norms[:, None]
    cfg = saelens_cfg("topk", rescale_acts_by_decoder_norm=True)
    sae = load_pretrained_sae(saelens(tmp_path / "sl", cfg, weights))
    x = activations()
    z = encoded(sae, x)

    expected = np_topk(np_pre(x, weights, True) * norms, K)
    assert_latents(z, expected)
    assert not np.array_equal(z > 0, np_topk(np_pre(x, weights, True), K) > 0)
    decoded = sae.decode(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(decoded, np_decode(expected / norms, weights), rtol=1e-5, atol=1e-5)


def test_saelens_5_topk_config_is_read_as_topk(tmp_path):
    weights = dictionary(seed=9)
    cfg = {  # SAELens 5: everything at the top, TopK told by activation_fn
        "model_name": "tiny",
        "hook_name": "blocks.3.hook_resid_post",
        "architecture": "standard",
        "d_in": D_MODEL,
        "d_sae": D_SAE,
        "activation_fn": "topk",
        "activation_fn_kwargs": {"k": 3},
        "apply_b_dec_to_input": True,
        "normalize_activations": False,
        "finetuning_scaling_factor": False,
        "sae_lens_training_version": "4.4.1",
    }
    sae = load_pretrained_sae(saelens(tmp_path / "sl", cfg, weights))
    x = activations()
    assert_latents(encoded(sae, x), np_topk(np_pre(x, weights, True), 3))
    assert sae.info["architecture"] == "topk" and sae.info["hook_name"] == cfg["hook_name"]


@pytest.mark.parametrize("mode", ["constant_norm_rescale", "layer_norm"])
def test_saelens_row_normalisation_is_honoured(tmp_path, mode):
    weights = dictionary(seed=10)
    cfg = saelens_cfg("standard", normalize_activations=mode)
    sae = load_pretrained_sae(saelens(tmp_path / "sl", cfg, weights))
    x = activations().astype(np.float64) * 5.0
    if mode == "constant_norm_rescale":
        coefficient = np.sqrt(D_MODEL) / np.linalg.norm(x, axis=1, keepdims=True)
        scaled, undo = x * coefficient, lambda y: y / coefficient
    else:
        mean = x.mean(axis=1, keepdims=True)
        std = (x - mean).std(axis=1, ddof=1, keepdims=True)
        scaled, undo = (x - mean) / (std + 1e-5), lambda y: y * std + mean
    z = np.maximum(np_pre(scaled, weights, True), 0)

    assert_latents(encoded(sae, x.astype(np.float32)), z)
    rec = sae.reconstruct(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(rec, undo(np_decode(z, weights)), rtol=1e-4, atol=1e-4)
    # one pass for both, as transfer uses it, gives the same
    both = sae.encode_and_reconstruct(torch.from_numpy(x.astype(np.float32)))
    np.testing.assert_allclose(both[0].numpy(), z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(both[1].numpy(), rec, rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"normalises each input row \\({mode}\\)"):
        sae.decode(torch.from_numpy(z))


@pytest.mark.parametrize("setting", ["expected_average_only_in", True])
def test_an_unfolded_input_scaling_factor_is_refused_by_name(tmp_path, setting):
    folder = saelens(tmp_path / "sl", saelens_cfg(normalize_activations=setting))
    message = (
        f"{KEY}: SAE config {folder / 'cfg.json'} says "
        "normalize_activations='expected_average_only_in': its inputs were multiplied"
    )
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}"):
        load_pretrained_sae(folder, key=KEY)


@pytest.mark.parametrize(
    ("cfg", "named"),
    [
        (saelens_cfg("gated"), "architecture='gated'"),
        (saelens_cfg("topk", k=None), "k=None"),
        (saelens_cfg("topk", k=D_SAE + 1), f"k={D_SAE + 1}"),
        (saelens_cfg(d_in=D_MODEL + 2), f"d_in={D_MODEL + 2}"),
        (saelens_cfg(normalize_activations="batch_norm"), "normalize_activations='batch_norm'"),
        (saelens_cfg(apply_b_dec_to_input="yes"), "apply_b_dec_to_input='yes'"),
        ({**saelens_cfg(), "activation_fn": "tanh-relu"}, "activation_fn='tanh-relu'"),
    ],
)
def test_a_saelens_config_that_cannot_be_honoured_is_refused_by_name(tmp_path, cfg, named):
    folder = saelens(tmp_path / "sl", cfg)
    with pytest.raises(UserInputError, match=re.escape(named)) as refusal:
        load_pretrained_sae(folder)
    assert str(folder / "cfg.json") in str(refusal.value)


def test_a_threshold_beside_a_standard_saelens_config_is_refused(tmp_path):
    folder = saelens(tmp_path / "sl")
    save_tensors(folder / "sae_weights.safetensors", dictionary())  # with its threshold
    with pytest.raises(
        UserInputError, match="says architecture='standard' but .* holds a JumpReLU threshold"
    ):
        load_pretrained_sae(folder)


def test_a_saelens_latent_scaling_factor_is_refused_unless_it_is_all_ones(tmp_path):
    weights = dictionary(seed=11)
    weights.pop("threshold")
    ones = saelens(
        tmp_path / "ones", saelens_cfg(), {**weights, "scaling_factor": np.ones(D_SAE, np.float32)}
    )
    x = activations()
    assert_latents(encoded(load_pretrained_sae(ones), x), np.maximum(np_pre(x, weights, True), 0))

    scaled = {**weights, "scaling_factor": np.full(D_SAE, 2.0, np.float32)}
    folder = saelens(tmp_path / "scaled", saelens_cfg(), scaled)
    with pytest.raises(UserInputError, match="carries a finetuning scaling_factor"):
        load_pretrained_sae(folder)


# ----------------------------------------------------------------- sparsify


def test_sparsify_is_topk_of_relu_after_subtracting_b_dec(tmp_path):
    weights = dictionary(seed=12)
    sae = load_pretrained_sae(sparsify(tmp_path / "layers.3", weights=weights))
    x = activations()
    z = encoded(sae, x)

    expected = np_topk(np.maximum(np_pre(x, weights, True), 0), K)
    assert_latents(z, expected)
    assert not np.array_equal(z > 0, np_topk(np_pre(x, weights, False), K) > 0)
    assert sae.W_enc.shape == (D_MODEL, D_SAE)
    rec = sae.reconstruct(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rec, np_decode(expected, weights), rtol=1e-5, atol=1e-5)


def test_sparsify_groupmax_keeps_one_latent_per_group(tmp_path):
    weights = dictionary(seed=13)
    sae = load_pretrained_sae(
        sparsify(tmp_path / "s", sparsify_cfg(activation="groupmax"), weights)
    )
    x = activations()
    z = encoded(sae, x)
    assert_latents(z, np_groupmax(np_pre(x, weights, True), K))
    assert ((z.reshape(ROWS, K, -1) > 0).sum(axis=2) <= 1).all()


def test_sparsify_bf16_weights(tmp_path):
    weights = dictionary(seed=14)
    sae = load_pretrained_sae(sparsify(tmp_path / "s", weights=weights, dtype=torch.bfloat16))
    stored = rounded_to(weights, torch.bfloat16)
    x = activations()
    assert_latents(encoded(sae, x), np_topk(np_pre(x, stored, True), K))


@pytest.mark.parametrize(
    ("cfg", "named"),
    [
        (sparsify_cfg(transcode=True), "transcode=true"),
        (sparsify_cfg(skip_connection=True), "skip_connection=true"),
        (sparsify_cfg(signed=True), "signed=true"),
        (sparsify_cfg(num_latents=D_SAE * 2), f"num_latents={D_SAE * 2}"),
        (sparsify_cfg(expansion_factor=4), "expansion_factor=4"),
        (sparsify_cfg(d_in=D_MODEL * 2), f"d_in={D_MODEL * 2}"),
        (sparsify_cfg(k=0), "k=0"),
        (sparsify_cfg(activation="groupmax", k=5), "k=5, which does not divide"),
        ({k: v for k, v in sparsify_cfg().items() if k != "k"}, "k=None"),
    ],
)
def test_a_sparsify_config_that_cannot_be_honoured_is_refused_by_name(tmp_path, cfg, named):
    folder = sparsify(tmp_path / "s", cfg)
    with pytest.raises(UserInputError, match=re.escape(named)) as refusal:
        load_pretrained_sae(folder)
    assert str(folder / "cfg.json") in str(refusal.value)


@pytest.mark.parametrize(
    "write", [lambda f, weights: saelens(f, saelens_cfg("topk"), weights), sparsify]
)
def test_topk_keeps_no_negative_latent_when_few_are_positive(tmp_path, write):
    weights = dictionary(seed=15)
    weights["b_enc"] = weights["b_enc"] - 2.5  # most pre-activations negative
    sae = load_pretrained_sae(write(tmp_path / "sae", weights=weights))
    x = activations()
    pre = np_pre(x, weights, True)  # both subtract b_dec
    assert ((pre > 0).sum(axis=1) < K).any(), "the case needs rows with fewer than k positives"
    z = encoded(sae, x)
    assert (z >= 0).all()
    assert_latents(z, np_topk(pre, K))


# ----------------------------------------------------------------- prunescope's own


def test_prunescope_folder_is_loaded_with_load_sae(tmp_path):
    folder = prunescope(tmp_path / "sae")
    sae = load_pretrained_sae(folder, d_model=D_MODEL)
    own = load_sae(folder)
    x = torch.from_numpy(activations())

    assert isinstance(sae, PrunescopeSAE) and sae.format == "prunescope"
    assert torch.equal(sae.encode(x), as_latent_encoder(own).encode(x))
    # and by hand: TopK of the encoder on (x - mean) / std
    w = {n: t.double().numpy() for n, t in own.state_dict().items()}
    pre = ((x.double().numpy() - w["mean"]) / w["std"]) @ w["W_enc"].T + w["b_enc"]
    assert_latents(sae.encode(x).numpy(), np_topk(pre, K))
    torch.testing.assert_close(sae.reconstruct(x), own(x).x_rec)
    assert sae.info["provenance"] == {"layer": 3}


# ----------------------------------------------------------------- detection


WRITERS = {
    "gemma_scope": gemma_scope,
    "gemma_scope_2": gemma_scope_2,
    "saelens": saelens,
    "sparsify": sparsify,
    "prunescope": prunescope,
}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_each_layout_is_detected_from_its_tensors_and_config(tmp_path, fmt):
    folder = WRITERS[fmt](tmp_path / "sae")
    assert detect_format(folder) == fmt
    weights = next(p for p in folder.iterdir() if p.suffix in (".npz", ".safetensors"))
    assert detect_format(weights) == fmt
    assert load_pretrained_sae(folder).format == fmt


def test_prunescope_and_sparsify_share_file_names_but_not_format(tmp_path):
    ours, theirs = prunescope(tmp_path / "ours"), sparsify(tmp_path / "theirs")
    assert {p.name for p in ours.iterdir()} >= {p.name for p in theirs.iterdir()}
    assert (detect_format(ours), detect_format(theirs)) == ("prunescope", "sparsify")


def test_a_loaded_sae_is_a_latent_encoder_for_survival(tmp_path):
    sae = load_pretrained_sae(gemma_scope(tmp_path / "gs"))
    assert isinstance(sae, DictionarySAE) and isinstance(sae, LatentEncoder)
    assert as_latent_encoder(sae) is sae
    rows = torch.from_numpy(activations()).double()
    latents = encode_rows(sae, rows, 0, "test rows")
    assert latents.shape == (ROWS, D_SAE) and latents.dtype == torch.float32
    assert (latents >= 0).all() and (latents > 0).any()


# ----------------------------------------------------------------- refusals


def test_an_unknown_layout_is_refused_naming_the_file_and_keys(tmp_path):
    folder = tmp_path / "odd"
    save_tensors(folder / "sae.safetensors", {"weight": np.zeros((3, 2)), "bias": np.zeros(3)})
    write_json(folder / "cfg.json", {"hidden": 3, "inputs": 2})
    message = (
        f"SAE weights file {folder / 'sae.safetensors'} holds the tensors bias, weight "
        "(cfg.json has the keys hidden, inputs), which matches no SAE layout"
    )
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}"):
        detect_format(folder)
    with pytest.raises(UserInputError, match=f"^{re.escape(KEY)}: {re.escape(message)}"):
        load_pretrained_sae(folder, key=KEY)


def test_saelens_tensors_without_their_cfg_are_not_taken_for_gemma_scope(tmp_path):
    """A SAELens JumpReLU folder that lost its cfg.json (say, a cache holding the weights
    alone) would be read as Gemma Scope without apply_b_dec_to_input: refused instead."""
    folder = tmp_path / "sl"
    save_tensors(folder / "sae_weights.safetensors", dictionary())
    with pytest.raises(UserInputError, match="with no cfg.json or config.json beside it"):
        detect_format(folder)
    write_json(folder / "config.json", GEMMA_SCOPE_2_CONFIG)  # a Gemma Scope config settles it
    assert detect_format(folder) == "gemma_scope"


def test_a_folder_without_weights_or_with_two_is_refused(tmp_path):
    empty = tmp_path / "empty"
    write_json(empty / "cfg.json", saelens_cfg())
    with pytest.raises(
        UserInputError,
        match=f"SAE folder {re.escape(str(empty))} holds no SAE weights file .* it holds cfg.json",
    ):
        detect_format(empty)
    both = gemma_scope(tmp_path / "both")
    gemma_scope_2(both, config=False)
    with pytest.raises(
        UserInputError, match="holds several weights files \\(params.npz, params.safetensors\\)"
    ):
        detect_format(both)


def test_an_sae_of_another_width_is_refused_naming_both(tmp_path):
    folder = gemma_scope(tmp_path / "gs")
    message = (
        f"reads activations of width d_model={D_MODEL}, but the activations it is to encode "
        f"have width {D_MODEL + 4}"
    )
    with pytest.raises(UserInputError, match=re.escape(message)):
        load_pretrained_sae(folder, d_model=D_MODEL + 4)
    assert load_pretrained_sae(folder, d_model=D_MODEL).d_model == D_MODEL
    with pytest.raises(UserInputError, match=re.escape(f"d_model={D_MODEL}, but")):
        load_pretrained_sae(prunescope(tmp_path / "own"), d_model=D_MODEL + 4)


def test_encoding_activations_of_another_width_is_refused(tmp_path):
    sae = load_pretrained_sae(gemma_scope(tmp_path / "gs"))
    with pytest.raises(ValueError, match=f"width {D_MODEL + 1} .* d_model={D_MODEL}"):
        sae.encode(torch.zeros(2, D_MODEL + 1))


@pytest.mark.parametrize(
    ("write", "missing"),
    [
        (
            lambda f, w: gemma_scope(f, {k: v for k, v in w.items() if k != "threshold"}),
            "threshold",
        ),
        (
            lambda f, w: saelens(
                f, saelens_cfg("jumprelu"), {k: v for k, v in w.items() if k != "threshold"}
            ),
            "threshold",
        ),
        (lambda f, w: gemma_scope_2(f, {k: v for k, v in w.items() if k != "b_dec"}), "b_dec"),
    ],
)
def test_a_missing_tensor_is_refused_by_name(tmp_path, write, missing):
    folder = write(tmp_path / "sae", dictionary())
    with pytest.raises(
        UserInputError, match=f"lacks the tensors {missing} .*so it is no complete SAE"
    ):
        load_pretrained_sae(folder)


def test_a_tensor_the_layout_has_no_use_for_is_refused(tmp_path):
    folder = gemma_scope(
        tmp_path / "gs", {**dictionary(), "W_skip": np.eye(D_MODEL, dtype=np.float32)}
    )
    with pytest.raises(UserInputError, match="holds the tensors W_skip, which the layout"):
        load_pretrained_sae(folder)


@pytest.mark.parametrize(
    ("write", "encoder", "shape"),
    [
        (gemma_scope, "W_enc", (D_MODEL, D_SAE)),
        (saelens, "W_enc", (D_MODEL, D_SAE)),
        (sparsify, "encoder.weight", (D_SAE, D_MODEL)),
    ],
)
def test_a_decoder_that_does_not_fit_the_encoder_is_refused(tmp_path, write, encoder, shape):
    weights = dictionary()
    weights["W_dec"] = np.zeros((D_SAE, D_MODEL + 1), np.float32)
    folder = write(tmp_path / "sae", weights=weights)
    message = (
        f"W_dec of shape ({D_SAE}, {D_MODEL + 1}), but its encoder {encoder} of shape "
        f"{shape} makes d_model={D_MODEL} and d_sae={D_SAE}, so it should be ({D_SAE}, {D_MODEL})"
    )
    with pytest.raises(UserInputError, match=re.escape(message)):
        load_pretrained_sae(folder)


def test_a_truncated_weights_file_asks_for_a_fresh_copy(tmp_path):
    folder = gemma_scope_2(tmp_path / "gs2")
    path = folder / "params.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        UserInputError,
        match="is truncated or corrupt .*; replace it with a complete copy of the SAE$",
    ):
        load_pretrained_sae(folder)


def test_source_specs_that_name_nothing_are_refused(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=f"^{KEY}: SAE .*google/gemma-scope-2b-pt-res does not exist \\(for a hub repo",
    ):
        resolve_sae_source("google/gemma-scope-2b-pt-res", key=KEY)
    with pytest.raises(UserInputError, match="has the keys subfolder; a hub SAE takes repo, path"):
        resolve_sae_source({"repo": "a/b", "subfolder": "x"})
    with pytest.raises(UserInputError, match="names no repo"):
        resolve_sae_source({"path": "x"})


# ----------------------------------------------------------------- the hub, offline


@pytest.fixture
def hub_cache(monkeypatch, tmp_path) -> Path:
    """No network, and a Hugging Face cache of our own (huggingface_hub reads both once,
    on import, so its constants are set too)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def cached_repo(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` at COMMIT, with refs/main pointing at it, laid out
    as ``hf download`` leaves it (files in place of blob links)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return repo / "snapshots" / COMMIT


def test_a_hub_sae_is_read_from_the_cache(hub_cache, tmp_path):
    snapshot = cached_repo(hub_cache, "prunescope-test/gemma-scope-2")
    gemma_scope_2(snapshot / "resid_post/layer_3_width_24_l0_small")
    spec = {"repo": "prunescope-test/gemma-scope-2", "path": "resid_post/layer_3_width_24_l0_small"}
    sae = load_pretrained_sae(spec, d_model=D_MODEL)
    local = load_pretrained_sae(gemma_scope_2(tmp_path / "local"))
    x = torch.from_numpy(activations())

    torch.testing.assert_close(sae.encode(x), local.encode(x))
    assert sae.info["model_name"] == "google/gemma-3-1b-it"  # config.json came along
    assert sae.source.to_dict() == {
        **spec,
        "commit": COMMIT,
        "local": str(snapshot / spec["path"] / "params.safetensors"),
    }
    by_file = resolve_sae_source({**spec, "path": spec["path"] + "/params.safetensors"})
    assert by_file.local == sae.source.local


def test_a_hub_sae_missing_from_the_offline_cache_is_one_sentence(hub_cache):
    spec = {
        "repo": "prunescope-test/gemma-scope",
        "path": "layer_3/width_24/average_l0_5",
        "revision": "v2",
    }
    message = (
        f"{KEY}: hub SAE prunescope-test/gemma-scope at revision v2 path "
        "layer_3/width_24/average_l0_5 could not be downloaded: HF_HUB_OFFLINE is set and it "
        "is not in the local cache; on a machine with network run `hf download "
        "prunescope-test/gemma-scope --include 'layer_3/width_24/average_l0_5/*' --revision v2`"
    )
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}"):
        load_pretrained_sae(spec, key=KEY)


def test_hub_downloads_fetch_only_the_sae_files(monkeypatch, tmp_path):
    """Only the weights file and configs of the SAE's own folder are asked for, at the
    revision given; files the repo lacks are skipped."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    served = gemma_scope(tmp_path / "served")
    asked = []

    def fake_download(repo_id, filename, *, revision=None):
        asked.append((repo_id, filename, revision))
        folder, _, name = filename.rpartition("/")
        local = served / name
        if folder != "layer_3/w" or not local.is_file():
            raise EntryNotFoundError(f"{filename} is not in {repo_id}")
        return str(local)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    source = resolve_sae_source(
        {"repo": "google/gemma-scope-2b-pt-res", "path": "layer_3/w/", "revision": "abc"}
    )
    assert source.local == served / "params.npz" and source.commit is None
    assert asked == [
        ("google/gemma-scope-2b-pt-res", "layer_3/w/params.npz", "abc"),
        ("google/gemma-scope-2b-pt-res", "layer_3/w/cfg.json", "abc"),
        ("google/gemma-scope-2b-pt-res", "layer_3/w/config.json", "abc"),
    ]

    asked.clear()
    with pytest.raises(
        UserInputError,
        match=(
            "hub repo google/x holds no SAE weights under 'nowhere' "
            "\\(none of nowhere/params.npz, .*nowhere/sae.safetensors\\)"
        ),
    ):
        resolve_sae_source({"repo": "google/x", "path": "nowhere"})
    assert [name for _, name, _ in asked] == [
        f"nowhere/{n}"
        for n in ("params.npz", "params.safetensors", "sae_weights.safetensors", "sae.safetensors")
    ]


def test_a_damaged_hub_file_asks_for_a_forced_download(hub_cache):
    snapshot = cached_repo(hub_cache, "prunescope-test/sparsify")
    folder = sparsify(snapshot / "layers.3")
    weights = folder / "sae.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    spec = {"repo": "prunescope-test/sparsify", "path": "layers.3"}
    with pytest.raises(
        UserInputError,
        match=re.escape(
            "; download it again with `hf download prunescope-test/sparsify "
            "--include 'layers.3/*' --force-download`"
        ),
    ):
        load_pretrained_sae(spec)


# ----------------------------------------------------------------- imports into the workflow

IMPORT_KEY = "models.tiny.pretrained_saes.3"


def weights_of(folder: Path) -> Path:
    return next(p for p in folder.iterdir() if p.suffix in (".npz", ".safetensors"))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_sae(copy, original) -> None:
    x = torch.from_numpy(activations(seed=9) * 3.0)
    assert (copy.format, copy.d_model, copy.d_sae) == (
        original.format,
        original.d_model,
        original.d_sae,
    )
    assert torch.equal(copy.encode(x), original.encode(x))
    assert torch.equal(copy.reconstruct(x), original.reconstruct(x))


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_an_imported_sae_encodes_as_the_original(tmp_path, fmt):
    original_folder = WRITERS[fmt](tmp_path / "original")
    out = tmp_path / "results/pretrained_sae/tiny/L3"
    record = import_pretrained_sae(
        str(original_folder), out, label="theirs", d_model=D_MODEL, key=IMPORT_KEY
    )
    original = load_pretrained_sae(original_folder)
    weights = weights_of(original_folder)

    assert record["label"] == "theirs"
    assert (record["format"], record["d_model"], record["d_sae"]) == (fmt, D_MODEL, D_SAE)
    assert record["local"] == str(original_folder)
    assert record["weights_file"] == weights.name
    assert record["weights_sha256"] == sha256_of(weights)
    assert "repo" not in record and "commit" not in record
    # the copy: the weights, the configs beside them and the record, nothing else
    originals = {
        p.name
        for p in original_folder.iterdir()
        if p.name in (weights.name, "cfg.json", "config.json")
    }
    assert {p.name for p in out.iterdir()} == originals | {"source.json"}
    for name in originals:
        assert (out / name).read_bytes() == (original_folder / name).read_bytes(), name
    assert json.loads((out / "source.json").read_text()) == record
    assert not (out.parent / "L3.partial").exists()

    copy, read_back = load_imported_sae(out, d_model=D_MODEL)
    assert read_back == record
    assert_same_sae(copy, original)
    for path in (out, out / weights.name, out / "source.json"):
        assert_same_sae(load_dictionary(path), original)
    # the copy stands alone: the original may go
    for path in original_folder.iterdir():
        path.unlink()
    assert_same_sae(load_imported_sae(out)[0], original)


def test_a_weights_file_is_imported_with_the_configs_beside_it(tmp_path):
    folder = saelens(tmp_path / "sl", saelens_cfg("topk"))
    (folder / "README.md").write_text("not part of the SAE")
    record = import_pretrained_sae(folder / "sae_weights.safetensors", tmp_path / "copy", label="x")
    assert record["local"] == str(folder / "sae_weights.safetensors")
    assert {p.name for p in (tmp_path / "copy").iterdir()} == {
        "sae_weights.safetensors",
        "cfg.json",
        "source.json",
    }
    assert_same_sae(load_imported_sae(tmp_path / "copy")[0], load_pretrained_sae(folder))


def test_an_import_of_another_width_is_refused_by_key_and_leaves_nothing(tmp_path):
    folder = gemma_scope(tmp_path / "gs")
    out = tmp_path / "results/pretrained_sae/tiny/L3"
    message = (
        f"{IMPORT_KEY}: SAE {folder} (gemma_scope) reads activations of width "
        f"d_model={D_MODEL}, but the activations it is to encode have width {D_MODEL + 1}"
    )
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}"):
        import_pretrained_sae(folder, out, label="x", d_model=D_MODEL + 1, key=IMPORT_KEY)
    assert not out.exists() and not out.with_name("L3.partial").exists()


def test_an_import_that_fails_half_way_leaves_no_folder(tmp_path, monkeypatch):
    from prunescope.pretrained import imports

    def broken(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imports, "write_json", broken)
    out = tmp_path / "copy"
    with pytest.raises(OSError, match="No space left"):
        import_pretrained_sae(sparsify(tmp_path / "s"), out, label="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_an_unreadable_sae_is_refused_by_key_and_leaves_nothing(tmp_path):
    folder = sparsify(tmp_path / "s", sparsify_cfg(transcode=True))
    with pytest.raises(UserInputError, match=f"^{re.escape(IMPORT_KEY)}: .*transcode=true"):
        import_pretrained_sae(folder, tmp_path / "copy", label="x", key=IMPORT_KEY)
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(IMPORT_KEY)}: SAE .* does not exist"):
        import_pretrained_sae(tmp_path / "nowhere", tmp_path / "copy", label="x", key=IMPORT_KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_an_import_run_again_replaces_the_earlier_copy(tmp_path):
    out = tmp_path / "copy"
    import_pretrained_sae(saelens(tmp_path / "a", weights=dictionary(seed=1)), out, label="a")
    folder = saelens(tmp_path / "b", weights=dictionary(seed=2))
    record = import_pretrained_sae(folder, out, label="b")
    sae, read_back = load_imported_sae(out)
    assert read_back == record and record["label"] == "b"
    assert_same_sae(sae, load_pretrained_sae(folder))


def test_a_hub_sae_is_imported_with_its_coordinates(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    snapshot = tmp_path / "hf-cache/models--google--gemma-scope-2/snapshots" / COMMIT
    path = "resid_post/layer_3_width_24_l0_small"
    served = gemma_scope_2(snapshot / path)
    asked = []

    def fake_download(repo_id, filename, *, revision=None):
        asked.append((repo_id, filename, revision))
        local = snapshot / filename
        if repo_id != "google/gemma-scope-2" or not local.is_file():
            raise EntryNotFoundError(f"{filename} is not in {repo_id}")
        return str(local)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    spec = {"repo": "google/gemma-scope-2", "path": path, "revision": "v1"}
    out = tmp_path / "results/pretrained_sae/tiny/L3"
    record = import_pretrained_sae(spec, out, label="Gemma Scope 2", d_model=D_MODEL)

    assert {(r, rev) for r, _, rev in asked} == {("google/gemma-scope-2", "v1")}
    on_disk = json.loads((out / "source.json").read_text())
    assert on_disk == record
    assert {k: on_disk[k] for k in ("repo", "path", "revision", "commit")} == {
        **spec,
        "commit": COMMIT,
    }
    assert on_disk["local"] == str(served / "params.safetensors")
    assert on_disk["weights_sha256"] == sha256_of(served / "params.safetensors")
    assert on_disk["model_name"] == "google/gemma-3-1b-it"  # config.json came along
    assert {p.name for p in out.iterdir()} == {"params.safetensors", "config.json", "source.json"}
    original = load_pretrained_sae(served)
    for file in served.iterdir():  # the hub cache may be cleared: the copy stands alone
        file.unlink()
    sae, _ = load_imported_sae(out, d_model=D_MODEL)
    assert sae.source.repo is None  # read from the copy
    x = torch.from_numpy(activations())
    assert torch.equal(sae.encode(x), original.encode(x))


def test_a_hub_sae_in_the_offline_cache_is_imported(hub_cache, tmp_path):
    snapshot = cached_repo(hub_cache, "prunescope-test/sparsify")
    sparsify(snapshot / "layers.3")
    spec = {"repo": "prunescope-test/sparsify", "path": "layers.3"}
    record = import_pretrained_sae(spec, tmp_path / "copy", label="s", d_model=D_MODEL)
    assert (record["repo"], record["path"], record["commit"]) == (spec["repo"], "layers.3", COMMIT)
    assert "revision" not in record
    assert record["format"] == "sparsify"
    assert_same_sae(load_imported_sae(tmp_path / "copy")[0], load_pretrained_sae(spec))


def test_an_imported_sae_of_another_width_is_refused_naming_its_label(tmp_path):
    out = tmp_path / "copy"
    import_pretrained_sae(gemma_scope(tmp_path / "gs"), out, label="Gemma Scope L3")
    message = (
        f"pretrained SAE 'Gemma Scope L3' (gemma_scope) reads activations of width "
        f"d_model={D_MODEL}, but these activations have width {D_MODEL * 2}"
    )
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}"):
        load_imported_sae(out, d_model=D_MODEL * 2)


def test_a_folder_without_its_record_is_no_imported_sae(tmp_path):
    folder = prunescope(tmp_path / "sae")
    record = folder / "source.json"
    with pytest.raises(
        FileNotFoundError, match=f"^pretrained SAE record {re.escape(str(record))} does not exist"
    ):
        load_imported_sae(folder)
    # but it is a dictionary the analyses can read
    own = load_sae(folder)
    x = torch.from_numpy(activations())
    for path in (folder, folder / "sae.safetensors", folder / "cfg.json"):
        sae = load_dictionary(path)
        assert isinstance(sae, PrunescopeSAE)
        assert torch.equal(sae.encode(x), as_latent_encoder(own).encode(x))
