"""prunescope's SAEs exported for SAELens, checked against the real sae_lens library.

sae_lens is a test-only dependency (requirements-dev.txt) and imported unguarded: a CI
without it fails here instead of skipping the check.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys

import pytest
import sae_lens
import torch
from safetensors.torch import load_file

from prunescope.errors import UserInputError
from prunescope.export import (
    SAELENS_FILES,
    SAELENS_FORMAT_VERSION,
    export_saelens,
    folded_weights,
)
from prunescope.sae import SAEConfig, TopKSAE, save_sae
from prunescope.survival import as_latent_encoder

D_MODEL, D_SAE, K = 12, 48, 4
HOOK = "blocks.1.hook_resid_post"

# tiny tensors: thread start-up costs more than the maths on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def standardised_sae(seed: int = 0) -> TopKSAE:
    """A TopK SAE with random weights, non-zero biases and a mean/std far from 0/1, so an
    export that drops any part of the normalisation or of the biases changes the latents."""
    gen = torch.Generator().manual_seed(seed)
    mean = 20.0 * torch.randn(D_MODEL, generator=gen, dtype=torch.float64) + 7.0
    std = torch.exp(3.0 * torch.rand(D_MODEL, generator=gen, dtype=torch.float64) - 1.0)
    sae = TopKSAE(D_MODEL, D_SAE, K, mean, std, generator=gen)
    with torch.no_grad():
        sae.W_enc.add_(0.3 * torch.randn(D_SAE, D_MODEL, generator=gen))
        sae.b_enc.copy_(0.5 * torch.randn(D_SAE, generator=gen))
        sae.b_dec.copy_(0.5 * torch.randn(D_MODEL, generator=gen))
    return sae.eval()


def raw_activations(sae: TopKSAE, n: int = 400, seed: int = 1) -> torch.Tensor:
    """Rows in the SAE's original (unnormalised) space, float32 as a model gives them."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D_MODEL, generator=gen, dtype=torch.float64)
    return (sae.mean + sae.std * z).float()


def prunescope_dense(sae: TopKSAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """prunescope's full path, normalise -> encode -> decode -> denormalise: the dense
    (rows, d_sae) latents and the reconstruction in the original space."""
    with torch.no_grad():
        out = sae(x)
    dense = torch.zeros(len(x), sae.d_sae, dtype=out.values.dtype)
    return dense.scatter_(1, out.indices, out.values), out.x_rec


def saelens_dense(folder, x: torch.Tensor, dtype: str | None = None):
    """SAELens's encode, decode and forward of the SAE it loads from ``folder``."""
    sae = sae_lens.SAE.load_from_disk(folder, dtype=dtype)
    with torch.no_grad():
        latents = sae.encode(x)
        return sae, latents, sae.decode(latents), sae(x)


def test_exported_sae_gives_prunescope_latents_and_reconstruction_on_raw_activations(tmp_path):
    sae = standardised_sae()
    x = raw_activations(sae)
    out = export_saelens(sae, tmp_path / "export", hook_name=HOOK, model_name="tiny-llama")
    assert sorted(p.name for p in out.iterdir()) == sorted(SAELENS_FILES)

    loaded, latents, recon, forward = saelens_dense(out, x)
    assert isinstance(loaded, sae_lens.TopKSAE)
    assert (loaded.cfg.d_in, loaded.cfg.d_sae, loaded.cfg.k) == (D_MODEL, D_SAE, K)
    assert loaded.cfg.normalize_activations == "none"
    assert loaded.cfg.rescale_acts_by_decoder_norm is False
    assert loaded.cfg.metadata.hook_name == HOOK
    assert loaded.cfg.metadata.model_name == "tiny-llama"
    assert loaded.cfg.metadata.sae_lens_version == SAELENS_FORMAT_VERSION
    assert loaded.dtype == torch.float32

    expected_latents, expected_recon = prunescope_dense(sae, x)
    # the same latents are on (top k with a positive value) and they have the same values
    assert torch.equal(latents > 0, expected_latents > 0)
    assert ((latents > 0).sum(-1) <= K).all() and (latents > 0).sum() > 0.9 * K * len(x)
    torch.testing.assert_close(latents, expected_latents, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(recon, expected_recon, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(forward, expected_recon, rtol=1e-4, atol=1e-3)


def test_float64_export_matches_prunescope_to_rounding(tmp_path):
    """In float64 the folded SAE agrees to ~1e-12: a term of the algebra that is off by a
    little would pass the float32 tolerance but not this one."""
    sae = standardised_sae(seed=3).double()
    x = raw_activations(sae, seed=4).double()
    out = export_saelens(sae, tmp_path / "export", hook_name=HOOK, dtype="float64")
    loaded, latents, recon, _ = saelens_dense(out, x)
    assert loaded.dtype == torch.float64
    expected_latents, expected_recon = prunescope_dense(sae, x)
    torch.testing.assert_close(latents, expected_latents, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(recon, expected_recon, rtol=1e-10, atol=1e-10)


def test_the_test_data_would_expose_an_export_without_folding(tmp_path):
    """Raw prunescope weights in SAELens's layout, normalisation and b_dec handling not
    folded in, give other latents on these activations: the tests above have teeth."""
    sae = standardised_sae()
    x = raw_activations(sae)
    export_saelens(sae, tmp_path / "export", hook_name=HOOK)
    unfolded = {
        "W_enc": sae.W_enc.detach().T.contiguous(),
        "b_enc": sae.b_enc.detach().clone(),
        "W_dec": sae.W_dec.detach().clone(),
        "b_dec": sae.b_dec.detach().clone(),
    }
    naive = sae_lens.SAE.load_from_disk(tmp_path / "export")
    naive.load_state_dict(unfolded)
    expected_latents, _ = prunescope_dense(sae, x)
    with torch.no_grad():
        wrong = naive.encode(x)
    assert not torch.equal(wrong > 0, expected_latents > 0)


def test_folding_with_zero_mean_unit_std_is_a_transpose():
    sae = TopKSAE(D_MODEL, D_SAE, K, generator=torch.Generator().manual_seed(0))
    folded = folded_weights(sae)
    assert torch.equal(folded["W_enc"], sae.W_enc.detach().double().T)
    assert torch.equal(folded["W_dec"], sae.W_dec.detach().double())
    assert not folded["b_enc"].any() and not folded["b_dec"].any()


def test_export_of_a_trained_folder_keeps_prunescope_provenance(tmp_path):
    sae = standardised_sae(seed=5)
    cfg = SAEConfig(expansion=D_SAE // D_MODEL, k=K, steps=10, warmup_steps=1)
    save_sae(sae, cfg, tmp_path / "sae", provenance={"model": "tiny", "layer": 1})
    out = export_saelens(
        tmp_path / "sae",
        tmp_path / "export",
        hook_name=HOOK,
        metadata={"context_size": 128},
        provenance={"rule": "export"},
    )
    x = raw_activations(sae, seed=6)
    loaded, latents, _, _ = saelens_dense(out, x)
    torch.testing.assert_close(latents, prunescope_dense(sae, x)[0], rtol=1e-4, atol=1e-4)

    ours = loaded.cfg.metadata.prunescope
    assert ours["source"] == str(tmp_path / "sae")
    assert ours["cfg"]["provenance"] == {"model": "tiny", "layer": 1}
    assert ours["cfg"]["k"] == K and ours["provenance"] == {"rule": "export"}
    assert loaded.cfg.metadata.context_size == 128
    assert loaded.cfg.metadata.sae_lens_training_version is None
    # SAELens writes the provenance back when it saves the SAE again
    loaded.save_model(tmp_path / "resaved")
    resaved = json.loads((tmp_path / "resaved" / "cfg.json").read_text())
    assert resaved["metadata"]["prunescope"] == ours


def test_export_writes_only_what_saelens_loads(tmp_path):
    sae = standardised_sae()
    out = export_saelens(sae, tmp_path / "export", hook_name=HOOK)
    assert set(load_file(out / "sae_weights.safetensors")) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["apply_b_dec_to_input"] is True


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    sae = standardised_sae()
    with pytest.raises(UserInputError, match="hook_name"):
        export_saelens(sae, tmp_path / "a", hook_name="")
    with pytest.raises(UserInputError, match="dtype"):
        export_saelens(sae, tmp_path / "b", hook_name=HOOK, dtype="int8")
    with torch.no_grad():
        sae.std[0] = 0.0
    with pytest.raises(UserInputError, match="std"):
        export_saelens(sae, tmp_path / "c", hook_name=HOOK)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_no_folder_and_keeps_an_earlier_one(tmp_path, monkeypatch):
    import prunescope.export as export

    sae = standardised_sae()
    out = tmp_path / "export"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        export_saelens(sae, out, hook_name=HOOK)
    assert list(tmp_path.iterdir()) == []

    monkeypatch.undo()
    export_saelens(sae, out, hook_name=HOOK)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(export, "write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        export_saelens(standardised_sae(seed=9), out, hook_name="other")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_killed_export_leaves_only_a_partial_folder(tmp_path):
    """A job killed (SIGKILL, no cleanup) after the weights are written and before cfg.json
    leaves ``<folder>.partial``, nothing under the final name, and SAELens opens nothing."""
    sae = standardised_sae()
    torch.save(sae.state_dict(), tmp_path / "state.pt")
    out = tmp_path / "export"
    script = f"""
import os, signal, torch
import prunescope.export as export
from prunescope.sae import TopKSAE

sae = TopKSAE({D_MODEL}, {D_SAE}, {K})
sae.load_state_dict(torch.load({str(tmp_path / "state.pt")!r}))

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

export.write_json = killed
export.export_saelens(sae, {str(out)!r}, hook_name={HOOK!r})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    assert not out.exists()
    partial = tmp_path / "export.partial"
    assert sorted(p.name for p in partial.iterdir()) == ["sae_weights.safetensors"]
    with pytest.raises(FileNotFoundError):
        sae_lens.SAE.load_from_disk(out)
    # a rerun replaces the leftover and finishes
    export_saelens(sae, out, hook_name=HOOK)
    assert not partial.exists() and sorted(p.name for p in out.iterdir()) == sorted(SAELENS_FILES)


def test_export_refuses_to_replace_a_folder_holding_other_files(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="notes.txt"):
        export_saelens(standardised_sae(), out, hook_name=HOOK)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "export.partial").exists()


# --- folders SAELens itself saved (conftest's saelens_folders) ---


def saelens_inputs(seed: int, d_in: int = 12, n: int = 200) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(n, d_in, generator=gen) + 1.0


def test_saelens_saves_and_reloads_its_own_architectures(saelens_folders):
    """SAELens's encodings of random inputs, from the folder it saved and from the SAE in
    memory, agree for each architecture (the folders are what other tests load)."""
    assert set(saelens_folders) == {"standard", "topk", "jumprelu"}
    x = saelens_inputs(0)
    for architecture, (folder, sae) in saelens_folders.items():
        loaded = sae_lens.SAE.load_from_disk(folder)
        assert loaded.cfg.architecture() == architecture
        with torch.no_grad():
            expected, got = sae.encode(x), loaded.encode(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert (expected > 0).any() and (expected == 0).any()


def load_pretrained_sae_or_skip():
    """``prunescope.pretrained.load_pretrained_sae`` once that module exists; a module that
    exists but fails to import fails the test rather than skipping it."""
    if importlib.util.find_spec("prunescope.pretrained") is None:
        pytest.skip("prunescope.pretrained is not written yet")
    module = importlib.import_module("prunescope.pretrained")
    if not hasattr(module, "load_pretrained_sae"):
        pytest.skip("prunescope.pretrained has no load_pretrained_sae yet")
    return module.load_pretrained_sae


def test_prunescope_loads_saelens_folders_with_saelens_encodings(saelens_folders):
    load_pretrained_sae = load_pretrained_sae_or_skip()
    x = saelens_inputs(1)
    for architecture, (folder, sae) in saelens_folders.items():
        encoder = as_latent_encoder(load_pretrained_sae(str(folder)))
        with torch.no_grad():
            got, expected = encoder.encode(x).cpu().float(), sae.encode(x)
        assert encoder.d_sae == sae.cfg.d_sae, architecture
        assert torch.equal(got > 0, expected > 0), architecture
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=architecture)


def test_export_then_prunescope_loader_round_trips(tmp_path):
    load_pretrained_sae = load_pretrained_sae_or_skip()
    sae = standardised_sae(seed=8)
    x = raw_activations(sae, seed=9)
    out = export_saelens(sae, tmp_path / "export", hook_name=HOOK)
    loaded = load_pretrained_sae(str(out))
    with torch.no_grad():
        got = as_latent_encoder(loaded).encode(x).cpu().float()
        expected, expected_recon = prunescope_dense(sae, x)
        recon = loaded.reconstruct(x).cpu().float() if hasattr(loaded, "reconstruct") else None
    assert torch.equal(got > 0, expected > 0)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    if recon is not None:
        torch.testing.assert_close(recon, expected_recon, rtol=1e-4, atol=1e-3)
