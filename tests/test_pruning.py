from __future__ import annotations

import copy

import pytest
import torch
from tiny_lms import tiny_causal_lm
from torch import nn

from prunescope.models import decoder_layers, prunable_linears
from prunescope.pruning import (
    SparseGPT,
    capture_layer_calls,
    count_to_prune,
    magnitude_mask_global,
    matrix_mask,
    measure_sparsity,
    nm_mask,
    prune_model,
    row_mask,
    run_layer,
    wanda_act_norms,
    wanda_scores,
)

VOCAB = 128
CONTEXT = 12


# ----------------------------------------------------------------- brute-force references


def brute_keep(values: list[float], n_prune: int) -> list[bool]:
    """Drop the n_prune smallest values, ties to the lower index."""
    order = sorted(range(len(values)), key=lambda j: (values[j], j))
    pruned = set(order[:n_prune])
    return [j not in pruned for j in range(len(values))]


def tied_scores(shape, seed: int) -> torch.Tensor:
    """Small integers, so ties are common and tie-breaking is exercised."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, shape, generator=g).float()


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.3, 0.5, 0.7])
def test_row_mask_matches_brute_force(sparsity):
    scores = tied_scores((6, 10), seed=1)
    keep = row_mask(scores, sparsity)
    k = count_to_prune(10, sparsity)
    expected = torch.tensor([brute_keep(row.tolist(), k) for row in scores])
    assert torch.equal(keep, expected)
    assert ((~keep).sum(1) == k).all()


@pytest.mark.parametrize("sparsity", [0.0, 0.2, 0.5, 0.65])
def test_matrix_mask_matches_brute_force(sparsity):
    scores = tied_scores((5, 7), seed=2)
    keep = matrix_mask(scores, sparsity)
    expected = torch.tensor(brute_keep(scores.flatten().tolist(), count_to_prune(35, sparsity)))
    assert torch.equal(keep.flatten(), expected)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8)])
def test_nm_mask_matches_brute_force(n, m):
    scores = tied_scores((4, 16), seed=3)
    keep = nm_mask(scores, n, m)
    expected = [
        sum((brute_keep(row[g : g + m].tolist(), n) for g in range(0, 16, m)), []) for row in scores
    ]
    assert torch.equal(keep, torch.tensor(expected))
    assert ((~keep).reshape(4, 16 // m, m).sum(-1) == n).all()


def test_nm_mask_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible by m"):
        nm_mask(torch.rand(3, 10), 2, 4)
    with pytest.raises(ValueError, match="0 < n < m"):
        nm_mask(torch.rand(3, 8), 4, 4)


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_global_magnitude_matches_brute_force(sparsity, dtype):
    g = torch.Generator().manual_seed(4)
    shapes = [(3, 5), (4, 4), (2, 7)]
    weights = [(torch.randint(-4, 5, s, generator=g) * 0.125).to(dtype) for s in shapes]
    weights.append((torch.randn(3, 6, generator=g) * 10).to(dtype))
    weights[0][0, 0] = -0.0
    masks = magnitude_mask_global(weights, sparsity)
    flat = torch.cat([w.float().abs().flatten() for w in weights]).tolist()
    total = len(flat)
    expected = brute_keep(flat, count_to_prune(total, sparsity))
    assert torch.cat([m.flatten() for m in masks]).tolist() == expected
    assert sum(int((~m).sum()) for m in masks) == count_to_prune(total, sparsity)


def test_global_magnitude_uses_one_threshold_across_matrices():
    small = torch.full((2, 4), 0.01)
    large = torch.full((2, 4), 5.0)
    masks = magnitude_mask_global([large, small], 0.5)
    assert masks[0].all() and not masks[1].any()


def test_global_magnitude_on_continuous_values():
    g = torch.Generator().manual_seed(5)
    weights = [torch.randn(50, 40, generator=g), torch.randn(30, 70, generator=g) * 3]
    masks = magnitude_mask_global(weights, 0.42)
    every = torch.cat([w.abs().flatten() for w in weights])
    k = count_to_prune(every.numel(), 0.42)
    threshold = every.kthvalue(k).values
    for w, m in zip(weights, masks, strict=True):
        assert torch.equal(m, w.abs() > threshold)


def test_wanda_scores_match_definition():
    g = torch.Generator().manual_seed(6)
    weight = torch.randn(3, 4, generator=g)
    inputs = torch.randn(20, 4, generator=g)
    norms = inputs.norm(dim=0)
    scores = wanda_scores(weight, norms)
    for i in range(3):
        for j in range(4):
            expected = abs(weight[i, j].item()) * (inputs[:, j] ** 2).sum().sqrt().item()
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="input columns"):
        wanda_scores(weight, torch.ones(5))


# ----------------------------------------------------------------- SparseGPT


def correlated_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    """Strongly correlated features, the regime where OBS updates pay off."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d // 4, generator=g) @ torch.randn(
        d // 4, d, generator=g
    ) + 0.1 * torch.randn(n, d, generator=g)


def reference_sparsegpt(W, X, sparsity, blocksize, percdamp, nm=None):
    """SparseGPT without the Cholesky trick: explicit OBS updates from inverses of
    the trailing Hessian blocks, in float64."""
    W = W.double().clone()
    X = X.double()
    cols = W.shape[1]
    H = 2 / X.shape[0] * X.T @ X
    H += percdamp * torch.diag(H).mean() * torch.eye(cols, dtype=torch.float64)
    hinv_diag = torch.tensor([torch.linalg.inv(H[i:, i:])[0, 0] for i in range(cols)])
    pruned = torch.zeros_like(W, dtype=torch.bool)
    done = 0
    for i in range(cols):
        if nm is None and i % blocksize == 0:
            i2 = min(i + blocksize, cols)
            saliency = (W[:, i:i2] ** 2 / hinv_diag[i:i2]).flatten().tolist()
            target = count_to_prune(W.shape[0] * i2, sparsity) - done
            done += target
            keep = torch.tensor(brute_keep(saliency, target)).view(W.shape[0], i2 - i)
            pruned[:, i:i2] = ~keep
        if nm is not None and i % nm[1] == 0:
            for r in range(W.shape[0]):
                saliency = (W[r, i : i + nm[1]] ** 2 / hinv_diag[i : i + nm[1]]).tolist()
                pruned[r, i : i + nm[1]] = ~torch.tensor(brute_keep(saliency, nm[0]))
        hinv = torch.linalg.inv(H[i:, i:])
        for r in torch.nonzero(pruned[:, i]).flatten():
            W[r, i:] -= W[r, i] / hinv[0, 0] * hinv[0, :]
    W[pruned] = 0
    return W


def run_sparsegpt(W, X, **kwargs):
    layer = nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data.copy_(W)
    gpt = SparseGPT(layer)
    for chunk in X.split(17):
        gpt.add_batch(chunk.unsqueeze(0))
    gpt.prune(**kwargs)
    return layer.weight.detach()


@pytest.mark.parametrize("blocksize", [4, 16])
def test_sparsegpt_matches_explicit_obs_reference(blocksize):
    g = torch.Generator().manual_seed(7)
    W = torch.randn(6, 16, generator=g)
    X = correlated_inputs(64, 16, seed=8)
    got = run_sparsegpt(W, X, sparsity=0.5, blocksize=blocksize, percdamp=0.01)
    expected = reference_sparsegpt(W, X, 0.5, blocksize, 0.01)
    assert torch.equal(got == 0, expected == 0)
    torch.testing.assert_close(got.double(), expected, atol=2e-4, rtol=1e-4)


def test_sparsegpt_nm_matches_reference():
    g = torch.Generator().manual_seed(9)
    W = torch.randn(5, 16, generator=g)
    X = correlated_inputs(64, 16, seed=10)
    got = run_sparsegpt(W, X, sparsity=0.5, blocksize=8, percdamp=0.01, nm=(2, 4))
    expected = reference_sparsegpt(W, X, 0.5, 8, 0.01, nm=(2, 4))
    torch.testing.assert_close(got.double(), expected, atol=2e-4, rtol=1e-4)
    assert ((got == 0).reshape(5, 4, 4).sum(-1) == 2).all()


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_beats_magnitude_reconstruction(nm):
    g = torch.Generator().manual_seed(11)
    W = torch.randn(16, 32, generator=g)
    X = correlated_inputs(256, 32, seed=12)
    got = run_sparsegpt(W, X, sparsity=0.5, blocksize=8, percdamp=0.01, nm=nm)
    keep_mag = nm_mask(W.abs(), 2, 4) if nm else matrix_mask(W.abs(), 0.5)
    err_gpt = (X @ W.T - X @ got.T).norm()
    err_mag = (X @ W.T - X @ (W * keep_mag).T).norm()
    assert int((got == 0).sum()) == W.numel() // 2
    assert err_gpt < 0.5 * err_mag


def test_sparsegpt_dead_inputs_and_zero_sparsity():
    g = torch.Generator().manual_seed(13)
    W = torch.randn(4, 8, generator=g)
    X = correlated_inputs(32, 8, seed=14)
    X[:, 3] = 0
    got = run_sparsegpt(W, X, sparsity=0.0, blocksize=4, percdamp=0.01)
    assert (got[:, 3] == 0).all()
    keep = torch.ones(8, dtype=torch.bool)
    keep[3] = False
    torch.testing.assert_close(got[:, keep], W[:, keep])


# ----------------------------------------------------------------- tiny models


def tiny_model(kind: str) -> nn.Module:
    if kind == "gemma3":
        layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
        return tiny_causal_lm(kind, VOCAB, layer_types=layer_types)
    return tiny_causal_lm(kind, VOCAB)


def calibration(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, CONTEXT), generator=g)


@pytest.mark.parametrize("kind", ["llama", "gemma2", "gemma3"])
def test_captured_layer_calls_reproduce_dense_hidden_states(kind):
    """Replaying each layer with its own captured arguments must give the model's
    hidden states; reusing one layer's sliding-window mask for another would not."""
    model = tiny_model(kind)
    ids = calibration(5)
    with torch.no_grad():
        states = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        hidden, calls = capture_layer_calls(model, ids, batch_size=2, device=torch.device("cpu"))
        layers = decoder_layers(model)
        for i in range(len(layers) - 1):
            hidden = [run_layer(layers[i], h, c) for h, c in zip(hidden, calls[i], strict=True)]
            torch.testing.assert_close(torch.cat(hidden), states[i + 1])


def untouched_params(model):
    return {
        "embed": model.get_input_embeddings().weight.detach().clone(),
        "lm_head": model.get_output_embeddings().weight.detach().clone(),
    }


@pytest.mark.parametrize("kind", ["llama", "gemma2", "gemma3"])
@pytest.mark.parametrize(
    ("method", "nm"), [("magnitude", None), ("wanda", None), ("sparsegpt", None), ("wanda", (2, 4))]
)
def test_prune_model_on_tiny_models(kind, method, nm):
    model = tiny_model(kind)
    before = untouched_params(model)
    sparsity = 0.5 if nm else 0.4
    report = prune_model(model, method, sparsity, calibration(), nm=nm, blocksize=16, batch_size=4)
    after = untouched_params(model)
    assert all(torch.equal(before[k], after[k]) for k in before)

    linears = prunable_linears(model)
    total = sum(m.weight.numel() for m in linears.values())
    zeros = sum(int((m.weight == 0).sum()) for m in linears.values())
    assert report["overall_sparsity"] == pytest.approx(zeros / total)
    if method == "magnitude":
        assert zeros == count_to_prune(total, sparsity)
    for name, module in linears.items():
        w = module.weight
        rows, cols = w.shape
        entry = report["per_matrix"][name]
        assert entry["zeros"] == int((w == 0).sum()) and entry["shape"] == [rows, cols]
        if nm:
            assert ((w == 0).reshape(rows, cols // 4, 4).sum(-1) == 2).all()
        elif method == "wanda":
            assert ((w == 0).sum(1) == count_to_prune(cols, sparsity)).all()
        elif method == "sparsegpt":
            assert entry["zeros"] == count_to_prune(w.numel(), sparsity)
    with torch.no_grad():
        logits = model(input_ids=calibration(2, seed=1)).logits
    assert torch.isfinite(logits).all()
    assert report["method"] == method and report["nm"] == (list(nm) if nm else None)
    assert report["n_calibration_windows"] == (None if method == "magnitude" else 6)


def test_wanda_matrix_granularity_and_magnitude_nm():
    model = tiny_model("llama")
    report = prune_model(model, "wanda", 0.3, calibration(), granularity="matrix")
    assert report["granularity"] == "matrix"
    for entry in report["per_matrix"].values():
        assert entry["zeros"] == count_to_prune(entry["numel"], 0.3)
    model = tiny_model("llama")
    report = prune_model(model, "magnitude", 0.5, None, nm=(2, 4))
    for module in prunable_linears(model).values():
        w = module.weight
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(-1) == 2).all()
    assert report["overall_sparsity"] == pytest.approx(0.5)


def test_wanda_act_norms_match_manual_layer0_inputs():
    model = tiny_model("llama")
    ids = calibration()
    norms = wanda_act_norms(model, ids, batch_size=4, device=torch.device("cpu"))
    with torch.no_grad():
        layer0 = decoder_layers(model)[0]
        x = layer0.input_layernorm(model.get_input_embeddings()(ids)).reshape(-1, 32)
    torch.testing.assert_close(norms["layers.0.self_attn.q_proj"], x.norm(dim=0))


def test_wanda_statistics_flow_through_pruned_layers():
    """Layer 1's Wanda masks must come from activations behind the *pruned* layer 0."""
    ids = calibration()
    cpu = torch.device("cpu")
    model = tiny_model("llama")
    manual = copy.deepcopy(model)
    dense_norms = wanda_act_norms(manual, ids, batch_size=4, device=cpu)
    prune_model(model, "wanda", 0.5, ids, batch_size=4)

    with torch.no_grad():
        for name, module in prunable_linears(manual).items():
            if name.startswith("layers.0."):
                module.weight.mul_(row_mask(wanda_scores(module.weight, dense_norms[name]), 0.5))
    norms_after_layer0 = wanda_act_norms(manual, ids, batch_size=4, device=cpu)

    pruned = prunable_linears(model)
    differs_from_dense = False
    for name, module in prunable_linears(manual).items():
        if not name.startswith("layers.1."):
            continue
        expected = row_mask(wanda_scores(module.weight, norms_after_layer0[name]), 0.5)
        assert torch.equal(pruned[name].weight != 0, expected), name
        from_dense = row_mask(wanda_scores(module.weight, dense_norms[name]), 0.5)
        differs_from_dense |= not torch.equal(from_dense, expected)
    assert differs_from_dense


def test_measure_sparsity_counts_zeros():
    model = tiny_model("llama")
    name, module = next(iter(prunable_linears(model).items()))
    with torch.no_grad():
        module.weight[:, :4] = 0
    overall, per_matrix = measure_sparsity(model)
    assert per_matrix[name]["zeros"] == 4 * module.weight.shape[0]
    total = sum(e["numel"] for e in per_matrix.values())
    assert overall == pytest.approx(4 * module.weight.shape[0] / total)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(method="obd", sparsity=0.5), "not one of"),
        (dict(method="magnitude", sparsity=1.0), r"outside \[0, 1\)"),
        (dict(method="magnitude", sparsity=-0.1), r"outside \[0, 1\)"),
        (dict(method="wanda", sparsity=0.5, calibration_ids=None), "needs calibration_ids"),
        (dict(method="wanda", sparsity=0.4, nm=(2, 4)), "pass sparsity = n/m"),
        (dict(method="wanda", sparsity=0.5, granularity="column"), "granularity"),
        (dict(method="wanda", sparsity=0.5, calibration_ids=torch.full((2, 4), VOCAB)), "vocab"),
        (dict(method="wanda", sparsity=0.5, calibration_ids=torch.ones(8).long()), "n_windows"),
        (dict(method="magnitude", sparsity=3 / 7, nm=(3, 7)), "into groups of 7, but .* inputs"),
    ],
)
def test_prune_model_rejects_bad_input(kwargs, message):
    model = tiny_model("llama")
    kwargs.setdefault("calibration_ids", calibration(2))
    before = [m.weight.clone() for m in prunable_linears(model).values()]
    with pytest.raises(ValueError, match=message):
        prune_model(model, **kwargs)
    after = [m.weight for m in prunable_linears(model).values()]
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))
