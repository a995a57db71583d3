from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_lms import tiny_causal_lm
from torch import nn

from prunescope.ablation import (
    _BlockOutputHook,
    ablation_kl,
    feature_activations,
    final_log_probs,
    kl_divergence,
    replace_hidden,
)
from prunescope.models import decoder_layers
from prunescope.sae import TopKSAE

VOCAB, HIDDEN, CONTEXT, LAYER = 128, 32, 10, 0
D_SAE, K = 64, 4


# tiny tensors: thread start-up costs more than the maths on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(kind: str) -> nn.Module:
    """A tiny random model whose weights are scaled up from HF's 0.02 init, so its
    next-token distributions are far from uniform and ablations move them measurably."""
    layer_types = {"gemma3": ["sliding_attention", "full_attention"]}.get(kind)
    extra = {"layer_types": layer_types} if layer_types else {}
    model = tiny_causal_lm(kind, VOCAB, num_hidden_layers=2, **extra)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)
        if not model.config.tie_word_embeddings:
            model.get_output_embeddings().weight.mul_(4.0)
    return model.eval()


def prompts(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, CONTEXT), generator=torch.Generator().manual_seed(seed))


def layer_residual(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    captured = {}

    def hook(module, args, output):
        captured["x"] = output[0] if isinstance(output, tuple) else output

    handle = decoder_layers(model)[LAYER].register_forward_hook(hook)
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    handle.remove()
    return captured["x"]


def tiny_sae(model: nn.Module) -> TopKSAE:
    """A random SAE whose mean/std are the layer's activation statistics, as in training."""
    x = layer_residual(model, prompts(16, seed=99)).reshape(-1, HIDDEN).double()
    return TopKSAE(
        HIDDEN, D_SAE, K, x.mean(0), x.std(0), generator=torch.Generator().manual_seed(2)
    ).eval()


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def setup(request):
    model = tiny_model(request.param)
    return model, tiny_sae(model)


def firing_counts(model, sae, ids) -> torch.Tensor:
    with torch.no_grad():
        values, indices = sae.encode(layer_residual(model, ids))
    return torch.zeros(D_SAE).index_add_(0, indices.flatten(), (values > 0).flatten().float())


def brute_force_kl(model, sae, ids, feature: int, mode: str) -> float:
    """KL at the last position of one prompt from full logits, with the edit built from the
    SAE's own encode/decode (not from the W_dec * std shortcut)."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        values, indices = sae.encode(hidden)
        ablated_values = torch.where(indices == feature, 0.0, values)
        without_f = sae.denormalise(sae.decode(ablated_values, indices))
        if mode == "error_preserving":
            with_f = sae.denormalise(sae.decode(values, indices))
            new = hidden.float() - (with_f - without_f)
        else:
            new = without_f
        return replace_hidden(output, new.to(hidden.dtype))

    with torch.no_grad():
        original = torch.log_softmax(model(input_ids=ids[None]).logits[0, -1].double(), -1)
        handle = decoder_layers(model)[LAYER].register_forward_hook(hook)
        try:
            ablated = torch.log_softmax(model(input_ids=ids[None]).logits[0, -1].double(), -1)
        finally:
            handle.remove()
    return float((original.exp() * (original - ablated)).sum())


def test_final_log_probs_match_full_logits(setup):
    model, _ = setup
    ids = prompts()
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ids).logits[:, -1].double(), -1)
        kept = final_log_probs(model, ids)
    assert kept.dtype == torch.float64
    torch.testing.assert_close(kept, full, atol=1e-5, rtol=1e-5)


def test_feature_activations_match_dense_code():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(3, 5, K, generator=g)
    indices = torch.stack([torch.randperm(D_SAE, generator=g)[:K] for _ in range(15)])
    indices = indices.reshape(3, 5, K)
    dense = torch.zeros(3, 5, D_SAE).scatter_(-1, indices, values)
    features = torch.tensor([7, 0, 63, int(indices[1, 2, 0])])
    torch.testing.assert_close(
        feature_activations(values, indices, features, D_SAE), dense[..., features]
    )


def test_kl_divergence_matches_definition():
    p_probs, q_probs = np.array([0.2, 0.5, 0.3]), np.array([0.1, 0.6, 0.3])
    p, q = torch.tensor(np.log([p_probs])), torch.tensor(np.log([q_probs]))
    expected = sum(p_probs[i] * np.log(p_probs[i] / q_probs[i]) for i in range(3))
    assert kl_divergence(p, q).item() == pytest.approx(expected, abs=1e-12)
    assert kl_divergence(p, p).item() == 0.0


@pytest.mark.parametrize("mode", ["error_preserving", "reconstruction"])
def test_kl_matches_brute_force_per_prompt(setup, mode):
    model, sae = setup
    ids = prompts(3)
    features = torch.argsort(firing_counts(model, sae, ids), descending=True)[:3].tolist()
    result = ablation_kl(model, sae, LAYER, ids, features, mode=mode, feature_batch_size=2)
    for i, feature in enumerate(features):
        for p in range(len(ids)):
            expected = brute_force_kl(model, sae, ids[p], feature, mode)
            assert result["kl_per_prompt"][i, p] == pytest.approx(expected, abs=1e-5, rel=1e-4)
    assert result["kl"] == pytest.approx(result["kl_per_prompt"].mean(1))
    assert result["kl"].max() > 1e-3


def test_batching_does_not_change_the_result(setup):
    model, sae = setup
    ids = prompts(5)
    features = torch.argsort(firing_counts(model, sae, ids), descending=True)[:7].tolist()
    runs = [
        ablation_kl(model, sae, LAYER, ids, features, feature_batch_size=f, prompt_batch_size=p)
        for f, p in [(1, 1), (5, 2), (len(features), 5), (3, 4)]
    ]
    runs.append(ablation_kl(model, sae, LAYER, ids, features, skip_zero_edits=False))
    for run in runs[1:]:
        np.testing.assert_allclose(run["kl_per_prompt"], runs[0]["kl_per_prompt"], atol=1e-5)


def test_zero_decoder_direction_gives_zero_kl(setup):
    model, sae = setup
    ids = prompts(4)
    counts = firing_counts(model, sae, ids)
    silenced, other = torch.argsort(counts, descending=True)[:2].tolist()
    zeroed = tiny_sae(model)
    with torch.no_grad():
        zeroed.W_dec[silenced] = 0.0
    shortcut = ablation_kl(model, zeroed, LAYER, ids, [silenced, other])
    computed = ablation_kl(model, zeroed, LAYER, ids, [silenced, other], skip_zero_edits=False)
    assert counts[silenced] > 0
    assert shortcut["kl"][0] == 0.0
    assert abs(computed["kl_per_prompt"][0]).max() < 1e-6
    assert shortcut["kl"][1] > 1e-4


def sae_with_silent_feature(model: nn.Module, feature: int) -> TopKSAE:
    """A tiny SAE whose ``feature`` never fires: its encoder bias lies far below zero."""
    sae = tiny_sae(model)
    with torch.no_grad():
        sae.b_enc[feature] = -1e4
    return sae


def test_feature_that_never_fires_gives_zero_kl(setup):
    model, sae = setup
    ids = prompts(4)
    never = 5
    dead = sae_with_silent_feature(model, never)
    shortcut = ablation_kl(model, dead, LAYER, ids, [never, 6], feature_batch_size=1)
    computed = ablation_kl(model, dead, LAYER, ids, [never, 6], skip_zero_edits=False)
    assert firing_counts(model, dead, ids)[never] == 0
    assert shortcut["kl"][0] == 0.0
    assert shortcut["n_pairs_zero_edit"] >= len(ids)
    assert abs(computed["kl_per_prompt"][0]).max() < 1e-6


def test_large_firing_direction_gives_positive_kl(setup):
    model, sae = setup
    ids = prompts(4)
    counts = firing_counts(model, sae, ids)
    feature = int(torch.argmax(counts))
    loud = tiny_sae(model)
    with torch.no_grad():
        loud.W_dec[feature] *= 20.0
    small = ablation_kl(model, sae, LAYER, ids, list(range(D_SAE)), feature_batch_size=32)
    large = ablation_kl(model, loud, LAYER, ids, [feature])
    assert (small["kl_per_prompt"] >= 0).all(), "float64 normalisation keeps KL >= 0"
    assert large["kl"][0] > 0.05
    assert large["kl"][0] > small["kl"][feature]


def test_reconstruction_mode_reports_baseline(setup):
    model, sae = setup
    ids = prompts(4)
    never = 5
    dead = sae_with_silent_feature(model, never)
    firing = int(torch.argmax(firing_counts(model, dead, ids)))
    result = ablation_kl(model, dead, LAYER, ids, [never, firing], mode="reconstruction")
    computed = ablation_kl(
        model, dead, LAYER, ids, [never], mode="reconstruction", skip_zero_edits=False
    )
    per_prompt = result["reconstruction_baseline_kl_per_prompt"]
    assert result["reconstruction_baseline_kl"] == pytest.approx(per_prompt.mean())
    assert result["reconstruction_baseline_kl"] > 1e-4
    np.testing.assert_array_equal(result["kl_per_prompt"][0], per_prompt)
    np.testing.assert_allclose(computed["kl_per_prompt"][0], per_prompt, atol=1e-6)
    assert result["kl"][0] == pytest.approx(result["reconstruction_baseline_kl"])
    assert result["kl"][1] != pytest.approx(result["reconstruction_baseline_kl"])
    plain = ablation_kl(model, dead, LAYER, ids, [never])
    assert plain["mode"] == "error_preserving"
    assert plain["reconstruction_baseline_kl"] is None


def test_reconstruction_mode_with_exact_reconstruction_matches_error_preserving():
    """An SAE with k = d_sae and an identity-like decoder on +/- axes reconstructs exactly,
    so both modes inject the same stream and give the same KL."""
    model = tiny_model("llama")
    ids = prompts(3)
    x = layer_residual(model, prompts(16, seed=99)).reshape(-1, HIDDEN).double()
    sae = TopKSAE(HIDDEN, 2 * HIDDEN, 2 * HIDDEN, x.mean(0), x.std(0)).eval()
    eye = torch.eye(HIDDEN)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
    features = [0, 3, HIDDEN + 1]
    rec = ablation_kl(model, sae, LAYER, ids, features, mode="reconstruction")
    err = ablation_kl(model, sae, LAYER, ids, features)
    assert rec["reconstruction_baseline_kl"] < 1e-8
    np.testing.assert_allclose(rec["kl_per_prompt"], err["kl_per_prompt"], atol=1e-6)
    assert err["kl"].min() > 0


def test_hook_keeps_tuple_output_structure():
    hook = _BlockOutputHook()
    hidden, extra = torch.ones(2, 3, 4), torch.zeros(1)
    assert hook(None, (), (hidden, extra)) is None
    assert torch.equal(hook.captured, hidden)
    hook.edit = lambda h: h.float() * 2
    out = hook(None, (), (hidden, extra))
    assert isinstance(out, tuple) and len(out) == 2 and out[1] is extra
    torch.testing.assert_close(out[0], hidden * 2)
    assert torch.equal(hook(None, (), hidden), hidden * 2)


def test_bad_inputs_are_refused(setup):
    model, sae = setup
    ids = prompts(2)
    with pytest.raises(ValueError, match="mode"):
        ablation_kl(model, sae, LAYER, ids, [0], mode="literal")
    with pytest.raises(ValueError, match="repeat"):
        ablation_kl(model, sae, LAYER, ids, [1, 1])
    with pytest.raises(ValueError, match="0..63"):
        ablation_kl(model, sae, LAYER, ids, [D_SAE])
    with pytest.raises(ValueError, match="layer 7"):
        ablation_kl(model, sae, 7, ids, [0])
    with pytest.raises(ValueError, match="2-D"):
        ablation_kl(model, sae, LAYER, ids[0], [0])
    with pytest.raises(ValueError, match="vocabulary"):
        ablation_kl(model, sae, LAYER, ids + VOCAB, [0])
    with pytest.raises(ValueError, match="d_model"):
        ablation_kl(model, TopKSAE(HIDDEN + 1, D_SAE, K), LAYER, ids, [0])
    with pytest.raises(ValueError, match="feature_batch_size"):
        ablation_kl(model, sae, LAYER, ids, [0], feature_batch_size=0)
