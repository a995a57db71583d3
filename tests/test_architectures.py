"""Every family of ``prunescope.architectures`` on a tiny random model of its own.

For each family: the prunable matrices are exactly the linear maps inside the decoder blocks
(GPT-2's ``Conv1D`` read as ``(out, in)``), pruning reaches its sparsity and N:M pattern along
each matrix's real inputs, the captured residual stream is HF's hidden state, ablation hooks
move the output, and perplexity is the plain mean NLL. An unknown family is refused in one
sentence, also when it is loaded from a folder.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from test_models import VOCAB, tiny_tokenizer
from tiny_lms import FAMILIES_TESTED, tiny_causal_lm
from torch import nn
from transformers import BloomConfig, BloomForCausalLM
from transformers.pytorch_utils import Conv1D

from prunescope import architectures
from prunescope.ablation import _BlockOutputHook, ablation_kl, final_log_probs, kl_divergence
from prunescope.architectures import (
    FAMILIES,
    decoder_blocks,
    family_of,
    final_norm,
    input_width,
    is_transposed,
    prunable_matrices,
    standard_widths,
    weight_matrix,
)
from prunescope.errors import UserInputError
from prunescope.models import (
    check_family,
    load_causal_lm,
    prunable_linears,
    residual_hook,
    residual_width,
)
from prunescope.perplexity import perplexity
from prunescope.pruning import (
    count_to_prune,
    prune_model,
    row_mask,
    wanda_act_norms,
    wanda_scores,
)
from prunescope.sae import TopKSAE

DEPTH, HIDDEN, CONTEXT = 2, 32, 12
CPU = torch.device("cpu")

# tiny tensors: thread start-up costs more than the maths on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(arch: str) -> nn.Module:
    """A 2-block model; Gemma 3's blocks are one sliding-window and one global."""
    extra = {"layer_types": ["sliding_attention", "full_attention"]} if arch == "gemma3" else {}
    return tiny_causal_lm(arch, VOCAB, num_hidden_layers=DEPTH, **extra)


def token_ids(n: int, seed: int, context: int = CONTEXT) -> torch.Tensor:
    return torch.randint(3, VOCAB, (n, context), generator=torch.Generator().manual_seed(seed))


def linears_by_walking(model: nn.Module) -> dict[str, nn.Module]:
    """Every ``nn.Linear`` and ``Conv1D`` inside the blocks, found without the family table."""
    return {
        f"layers.{i}.{name}": module
        for i, block in enumerate(decoder_blocks(model))
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear | Conv1D)
    }


# ----------------------------------------------------------------------- the family table


def test_every_family_has_a_tiny_instance():
    tested = {family_of(tiny(arch)).name for arch in FAMILIES_TESTED}
    assert tested == {family.name for family in FAMILIES}
    # and every model_type of a family with several is its own tiny instance (Qwen2 and 3)
    types = {tiny(arch).config.model_type for arch in FAMILIES_TESTED}
    assert {"qwen2", "qwen3"} <= types


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
def test_prunable_matrices_are_every_linear_inside_the_blocks(arch):
    model = tiny(arch)
    found = prunable_matrices(model)
    walked = linears_by_walking(model)
    assert {name: id(m) for name, m in found.items()} == {name: id(m) for name, m in walked.items()}
    assert prunable_linears(model).keys() == found.keys()
    assert len(found) == DEPTH * len(family_of(model).projections)

    inside = {id(m) for block in decoder_blocks(model) for m in block.modules()}
    outside = [m for m in model.modules() if id(m) not in inside]
    assert not {id(m) for m in outside} & {id(m) for m in found.values()}
    # the LM head and the embeddings are outside, and their weights are none of the pruned
    pruned_weights = {m.weight.data_ptr() for m in found.values()}
    assert model.get_output_embeddings() in outside
    for edge in (model.get_input_embeddings(), model.get_output_embeddings()):
        assert edge.weight.data_ptr() not in pruned_weights


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
def test_weight_matrix_is_the_out_by_in_map_and_writes_through(arch):
    model = tiny(arch)
    g = torch.Generator().manual_seed(3)
    for name, module in prunable_matrices(model).items():
        W = weight_matrix(module)
        x = torch.randn(5, input_width(module), generator=g)
        with torch.no_grad():
            torch.testing.assert_close(module(x), F.linear(x, W, module.bias))
        assert W.data_ptr() == module.weight.data_ptr()
        stored_index = (0, 1) if is_transposed(module) else (1, 0)
        with torch.no_grad():
            module.weight[stored_index] = 1.0
            W[1, 0] = 0.0
        assert module.weight[stored_index] == 0, name


def test_conv1d_is_read_transposed_along_its_true_inputs():
    model = tiny("gpt2")
    matrices = prunable_matrices(model)
    assert all(isinstance(m, Conv1D) and is_transposed(m) for m in matrices.values())
    for module in matrices.values():
        assert module.weight.shape == (module.nx, module.nf)  # stored (in, out)
        assert torch.equal(weight_matrix(module), module.weight.T)
        assert input_width(module) == module.nx
    c_fc = matrices["layers.0.mlp.c_fc"]
    assert (c_fc.nx, c_fc.nf) == (HIDDEN, 64) and input_width(c_fc) == HIDDEN
    assert input_width(matrices["layers.0.mlp.c_proj"]) == 64
    with torch.no_grad():
        weight_matrix(c_fc)[5, 7] = 0.0  # output 5, input 7
    assert c_fc.weight[7, 5] == 0 and c_fc.weight[5, 7] != 0


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
def test_config_json_widths_under_their_standard_names(arch):
    config = json.loads(tiny(arch).config.to_json_string())
    shape = standard_widths(config)
    assert shape["hidden_size"] == HIDDEN and shape["num_hidden_layers"] == DEPTH
    assert shape["num_attention_heads"] == 4 and shape["intermediate_size"] == 64


def test_gpt2_without_n_inner_has_four_times_its_width():
    config = json.loads(tiny_causal_lm("gpt2", VOCAB, n_inner=None).config.to_json_string())
    assert config["n_inner"] is None
    assert standard_widths(config)["intermediate_size"] == 4 * HIDDEN


# ----------------------------------------------------------------------------- pruning

PRUNINGS = [
    ("magnitude", None),
    ("wanda", None),
    ("sparsegpt", None),
    ("magnitude", (2, 4)),
    ("wanda", (2, 4)),
    ("sparsegpt", (2, 4)),
]


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
@pytest.mark.parametrize(("method", "nm"), PRUNINGS)
def test_pruning_reaches_its_sparsity_along_the_real_inputs(arch, method, nm):
    model = tiny(arch)
    edges = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    edges_before = [w.detach().clone() for w in edges]
    dense = {name: weight_matrix(m).clone() for name, m in prunable_matrices(model).items()}
    calibration = token_ids(6, seed=0)
    if method == "wanda" and nm is None:
        norms = wanda_act_norms(model, calibration, batch_size=4, device=CPU)

    report = prune_model(model, method, 0.5, calibration, nm=nm, blocksize=16, batch_size=4)

    assert all(torch.equal(w, b) for w, b in zip(edges, edges_before, strict=True))
    matrices = prunable_matrices(model)
    assert report["per_matrix"].keys() == matrices.keys()
    total = sum(m.weight.numel() for m in matrices.values())
    zeros = sum(int((m.weight == 0).sum()) for m in matrices.values())
    assert report["overall_sparsity"] == pytest.approx(zeros / total)
    if method == "magnitude" and nm is None:  # one global threshold
        assert zeros == count_to_prune(total, 0.5)
    for name, module in matrices.items():
        W = weight_matrix(module)
        rows, cols = W.shape
        entry = report["per_matrix"][name]
        assert entry["shape"] == [rows, cols] and cols == input_width(module)
        assert entry["zeros"] == int((W == 0).sum())
        if nm is not None:
            # every 4 consecutive inputs of every output row lose exactly 2
            assert ((W == 0).reshape(rows, cols // 4, 4).sum(-1) == 2).all(), name
        elif method == "wanda":
            assert ((W == 0).sum(1) == count_to_prune(cols, 0.5)).all(), name
        elif method == "sparsegpt":
            assert entry["zeros"] == count_to_prune(W.numel(), 0.5), name
        if method != "sparsegpt":  # masks only: what survives is the dense weight
            kept = W != 0
            assert torch.equal(W[kept], dense[name][kept]), name
        if method == "wanda" and nm is None and name.startswith("layers.0."):
            # layer 0 sees the dense inputs, so its masks follow from one dense pass
            expected = row_mask(wanda_scores(dense[name], norms[name]), 0.5)
            assert torch.equal(W != 0, expected), name
        if is_transposed(module) and nm is not None:
            # the stored (in, out) weight: groups run down its rows (the inputs), not along them
            stored = module.weight == 0
            assert (stored.reshape(cols // 4, 4, rows).sum(1) == 2).all(), name
            assert not (stored.reshape(cols, rows // 4, 4).sum(-1) == 2).all(), name
    with torch.no_grad():
        logits = model(input_ids=token_ids(2, seed=1)).logits
    assert logits.shape == (2, CONTEXT, model.get_output_embeddings().weight.shape[0])
    assert torch.isfinite(logits).all()


# ------------------------------------------------------------------------ residual stream


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
def test_residual_capture_is_hfs_hidden_state(arch):
    model = tiny(arch)
    ids = token_ids(2, seed=2)
    with torch.no_grad():
        hidden_states = model(ids, output_hidden_states=True).hidden_states
    assert len(hidden_states) == DEPTH + 1
    captured = []
    for layer in range(DEPTH):
        for stop_early in (False, True):
            with torch.no_grad(), residual_hook(model, layer, stop_early=stop_early) as capture:
                out = capture.run(ids)
            assert out.shape == (2, CONTEXT, HIDDEN)
            if stop_early:
                torch.testing.assert_close(out, captured[-1], rtol=0, atol=0)
            else:
                captured.append(out)
    for layer in range(DEPTH - 1):
        torch.testing.assert_close(captured[layer], hidden_states[layer + 1], rtol=0, atol=0)
    # HF's last entry is after the final norm; the capture is the last block's own output
    norm = final_norm(model)
    assert norm is not None and not any(
        norm is m for b in decoder_blocks(model) for m in b.modules()
    )
    assert not torch.allclose(captured[-1], hidden_states[-1])
    with torch.no_grad():
        torch.testing.assert_close(norm(captured[-1]), hidden_states[-1])


# ----------------------------------------------------------------------------- ablation


def sharpened(arch: str) -> nn.Module:
    """Weights scaled up from HF's 0.02 init, so next-token distributions are far from
    uniform and an ablation moves them measurably (as in tests/test_ablation.py)."""
    model = tiny(arch)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=g) / param.shape[1] ** 0.5)
    return model.eval()


def block_output(model: nn.Module, layer: int, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), residual_hook(model, layer) as capture:
        return capture.run(ids)


def opt_350m_shaped() -> nn.Module:
    """OPT as OPT-350m builds it: LayerNorm after each residual add (no final norm) and
    embeddings narrower than the residual stream, projected in and out around the blocks."""
    return tiny_causal_lm(
        "opt", VOCAB, num_hidden_layers=DEPTH, do_layer_norm_before=False, word_embed_proj_dim=16
    )


def test_opt_350m_shape_residual_stream_and_pruning():
    model = opt_350m_shaped()
    assert final_norm(model) is None
    decoder = model.model.decoder
    found = prunable_matrices(model)
    assert {n: id(m) for n, m in found.items()} == {
        n: id(m) for n, m in linears_by_walking(model).items()
    }
    assert not {id(decoder.project_in), id(decoder.project_out)} & {id(m) for m in found.values()}
    ids = token_ids(2, seed=2)
    with torch.no_grad():
        hidden_states = model(ids, output_hidden_states=True).hidden_states
    first, last = (block_output(model, layer, ids) for layer in range(DEPTH))
    assert first.shape == last.shape == (2, CONTEXT, HIDDEN)
    torch.testing.assert_close(first, hidden_states[1], rtol=0, atol=0)
    # no final norm: HF's last entry is the last block's output projected to the embeddings
    assert hidden_states[-1].shape == (2, CONTEXT, 16)
    with torch.no_grad():
        torch.testing.assert_close(decoder.project_out(last), hidden_states[-1])
    report = prune_model(model, "wanda", 0.5, token_ids(6, seed=0), nm=(2, 4), batch_size=4)
    assert report["overall_sparsity"] == pytest.approx(0.5)
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_opt_350m_shape_ablation_takes_a_residual_width_sae():
    """Its embeddings (16 wide) are narrower than its residual stream (32): the SAE and the
    cache are as wide as the stream."""
    model = opt_350m_shaped()
    sae = TopKSAE(HIDDEN, 64, 4, generator=torch.Generator().manual_seed(2)).eval()
    result = ablation_kl(model, sae, 0, token_ids(2, seed=4, context=10), [0, 1])
    assert result["kl"].shape == (2,)


def brute_force_kl(model, sae, layer, ids, feature) -> float:
    """KL at the last position with ``feature`` zeroed in the SAE code and the SAE's
    reconstruction error kept, edited into block ``layer``'s output by a plain hook."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        values, indices = sae.encode(hidden)
        without = sae.denormalise(sae.decode(torch.where(indices == feature, 0.0, values), indices))
        edited = hidden - (sae.denormalise(sae.decode(values, indices)) - without)
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    with torch.no_grad():
        clean = torch.log_softmax(model(ids[None]).logits[0, -1].double(), -1)
        handle = decoder_blocks(model)[layer].register_forward_hook(hook)
        try:
            ablated = torch.log_softmax(model(ids[None]).logits[0, -1].double(), -1)
        finally:
            handle.remove()
    return float(kl_divergence(clean, ablated))


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
def test_ablation_hooks_move_the_output_and_no_edit_leaves_it(arch):
    model = sharpened(arch)
    prompts = token_ids(4, seed=4, context=10)
    for layer in range(DEPTH):
        x = block_output(model, layer, token_ids(16, seed=99, context=10)).reshape(-1, HIDDEN)
        sae = TopKSAE(
            HIDDEN, 64, 4, x.double().mean(0), x.double().std(0), torch.Generator().manual_seed(2)
        ).eval()
        with torch.no_grad():
            clean = final_log_probs(model, prompts)
            full = torch.log_softmax(model(prompts).logits[:, -1].double(), -1)
            torch.testing.assert_close(clean, full, atol=1e-5, rtol=1e-5)
            # a hook that edits nothing leaves the log-probs exactly as they were
            hook = _BlockOutputHook()
            hook.edit = lambda hidden: hidden.clone()
            handle = decoder_blocks(model)[layer].register_forward_hook(hook)
            try:
                unchanged = final_log_probs(model, prompts)
            finally:
                handle.remove()
        assert torch.equal(unchanged, clean)

        result = ablation_kl(model, sae, layer, prompts, range(64), skip_zero_edits=False)
        fired, kl = result["fired"], result["kl_per_prompt"]
        # a feature at the last position reaches the last logits in every family (through
        # the residual); one earlier may not (a sliding window, or the last block)
        with torch.no_grad():
            values, indices = sae.encode(block_output(model, layer, prompts)[:, -1])
        at_end = np.zeros_like(fired)
        for p in range(len(prompts)):
            at_end[indices[p][values[p] > 0].numpy(), p] = True
        assert at_end.any() and (~fired).any() and not (at_end & ~fired).any()
        assert (kl[at_end] > 0).all() and kl.max() > 1e-3, (layer, kl[at_end].min())
        assert abs(kl[~fired]).max() < 1e-6  # a feature that is not there changes nothing
        feature, prompt = (int(i) for i in np.argwhere(at_end)[0])
        expected = brute_force_kl(model, sae, layer, prompts[prompt], feature)
        assert kl[feature, prompt] == pytest.approx(expected, rel=1e-3, abs=1e-6)


# --------------------------------------------------------------------------- perplexity


def plain_mean_nll(model, stream, window, stride, bos_id) -> tuple[float, int]:
    """Windows of ``window`` tokens every ``stride``, each token scored by the first window
    holding it (after at least one token of context), from ``model(ids).logits``."""
    text = window - (bos_id is not None)
    nlls, scored_to = [], 0
    for begin in range(0, len(stream), stride):
        end = min(begin + text, len(stream))
        ids = stream[begin:end]
        if bos_id is not None:
            ids = torch.cat([torch.tensor([bos_id]), ids])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids[None]).logits[0].double(), -1)
        shift = bos_id is not None
        for t in range(max(scored_to, begin + 1 - shift), end):
            nlls.append(-float(log_probs[t - begin + shift - 1, stream[t]]))
        scored_to = end
        if end == len(stream):
            break
    return sum(nlls) / len(nlls), len(nlls)


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
def test_perplexity_is_the_plain_mean_nll(arch):
    model = tiny(arch)
    stream = token_ids(1, seed=5, context=29)[0]
    for window, stride, bos_id in [(8, 5, None), (8, 7, 1)]:
        result = perplexity(model, stream, window=window, stride=stride, bos_id=bos_id)
        nll, count = plain_mean_nll(model, stream, window, stride, bos_id)
        assert result["n_tokens_scored"] == count
        assert result["nll"] == pytest.approx(nll, rel=1e-4)
        assert result["perplexity"] == pytest.approx(math.exp(nll), rel=1e-4)


# ------------------------------------------------------------------------ loading, refusal


@pytest.mark.parametrize("arch", FAMILIES_TESTED)
def test_every_family_loads_from_a_saved_folder(arch, tmp_path):
    original = tiny(arch)
    original.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    model, _ = load_causal_lm(str(tmp_path), device="cpu", key="models.m.name")
    ids = token_ids(2, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, original(ids).logits)
    assert residual_width(tmp_path) == HIDDEN


def bloom_config() -> BloomConfig:
    return BloomConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        n_layer=1,
        n_head=4,
        architectures=["BloomForCausalLM"],
    )


def assert_refusal(message: str, key: str) -> None:
    assert message.startswith(f"{key}: BloomForCausalLM "), message
    assert "\n" not in message and not re.search(r"[.;:!?]\s+[A-Z]", message[len(key) + 2 :])
    assert architectures.supported() in message
    for family in FAMILIES:
        assert family.label in message


def test_check_family_refuses_an_unknown_family_in_one_sentence():
    with pytest.raises(UserInputError) as refused:
        check_family(bloom_config(), key="models.m.name")
    assert_refusal(str(refused.value), "models.m.name")
    check_family(tiny("gpt2").config, key="models.m.name")  # a known one passes


def test_loading_an_unknown_family_is_refused_before_its_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    BloomForCausalLM(bloom_config()).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights of an unsupported family were loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    with pytest.raises(UserInputError) as refused:
        load_causal_lm(str(tmp_path), device="cpu", key="models.m.name")
    assert_refusal(str(refused.value), "models.m.name")


def test_opt_350m_shape_caches_residual_width_activations(tmp_path):
    from prunescope.activations import capture_activations, read_cache_info

    model = opt_350m_shaped()
    ids = token_ids(3, seed=5, context=10)
    capture_activations(
        model, 0, {"train": ids, "eval": ids[:1]}, tmp_path / "L0.h5", provenance={}
    )
    assert read_cache_info(tmp_path / "L0.h5")["d_model"] == 32
