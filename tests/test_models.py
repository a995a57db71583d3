"""Loading saved tiny models of each paper architecture, and the residual-stream hook."""

from __future__ import annotations

import pytest
import torch
from tiny_lms import ARCHITECTURES, tiny_causal_lm
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
)

from prunescope.errors import UserInputError
from prunescope.models import (
    check_dtype_for_model,
    check_layer_index,
    decoder_layers,
    load_causal_lm,
    residual_hook,
)

VOCAB = 96
DEPTH = 3


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + [f"w{i}" for i in range(VOCAB - 4)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[str, tuple[str, torch.nn.Module]]:
    """Each architecture saved with a tokenizer, as a trained or hub model would be."""
    out = {}
    for i, arch in enumerate(ARCHITECTURES):
        model = tiny_causal_lm(arch, VOCAB, num_hidden_layers=DEPTH, seed=i)
        folder = tmp_path_factory.mktemp(arch)
        model.save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        out[arch] = (str(folder), model)
    return out


def token_batch(seed: int = 0) -> torch.Tensor:
    return torch.randint(4, VOCAB, (2, 11), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_loaded_model_reproduces_the_saved_one(saved_models, arch):
    folder, original = saved_models[arch]
    model, tokenizer = load_causal_lm(folder, device="cpu")
    ids = token_batch()
    torch.testing.assert_close(model(ids).logits, original(ids).logits)
    assert tokenizer.bos_token == "<bos>" and tokenizer.pad_token == "<pad>"
    assert tokenizer("w0 w1 nope")["input_ids"][-3:] == [4, 5, 3]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_hook_captures_block_output_equal_to_hf_hidden_states(saved_models, arch):
    model, _ = load_causal_lm(saved_models[arch][0], device="cpu")
    ids = token_batch(1)
    with torch.inference_mode():
        hidden_states = model(ids, output_hidden_states=True).hidden_states
        for layer in range(DEPTH - 1):
            with residual_hook(model, layer) as capture:
                captured = capture.run(ids)
            torch.testing.assert_close(captured, hidden_states[layer + 1], rtol=0, atol=0)
        # HF's last entry has the final norm applied; the hook keeps the raw block output.
        with residual_hook(model, DEPTH - 1) as capture:
            last = capture.run(ids)
        assert not torch.allclose(last, hidden_states[-1])
        torch.testing.assert_close(model.model.norm(last), hidden_states[-1])


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_stop_early_skips_later_blocks_and_gives_the_same_activation(saved_models, arch):
    model, _ = load_causal_lm(saved_models[arch][0], device="cpu")
    calls = []
    later = decoder_layers(model)[1].register_forward_hook(lambda *_: calls.append(1))
    head = model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    ids = token_batch(2)
    with torch.inference_mode():
        with residual_hook(model, 0, stop_early=True) as capture:
            early = capture.run(ids)
        assert calls == []
        with residual_hook(model, 0) as capture:
            full = capture.run(ids)
    later.remove()
    head.remove()
    assert len(calls) == 2
    torch.testing.assert_close(early, full, rtol=0, atol=0)


def test_hook_is_removed_on_exit_even_after_an_error(saved_models):
    model, _ = load_causal_lm(saved_models["llama"][0], device="cpu")
    block = decoder_layers(model)[1]
    with pytest.raises(RuntimeError, match="boom"):
        with residual_hook(model, 1, stop_early=True):
            raise RuntimeError("boom")
    assert len(block._forward_hooks) == 0
    model(token_batch())  # a plain forward is no longer cut short


def test_capture_computes_in_the_model_dtype():
    model = tiny_causal_lm("gemma3", VOCAB, num_hidden_layers=DEPTH).to(torch.bfloat16)
    with torch.inference_mode(), residual_hook(model, 1, stop_early=True) as capture:
        out = capture.run(token_batch())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 11, 32)


def test_layer_past_depth_is_refused_naming_layer_and_depth(saved_models):
    model, _ = load_causal_lm(saved_models["gemma2"][0], device="cpu")
    for bad in (DEPTH, -1):
        with pytest.raises(
            UserInputError, match=rf"^models.g.layers: layer {bad} .*0\.\.{DEPTH - 1}"
        ):
            check_layer_index(model, bad, key="models.g.layers")
        with pytest.raises(ValueError, match=rf"layer {bad} "):
            with residual_hook(model, bad):
                pass


def test_missing_model_folder_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_causal_lm(str(missing))


@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_float16_refused_for_gemma(saved_models, arch):
    with pytest.raises(ValueError, match="float16 is refused for gemma"):
        load_causal_lm(saved_models[arch][0], dtype="float16", device="cpu")
    check_dtype_for_model("llama", "float16")
    check_dtype_for_model("gemma3_text", "bfloat16")


@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_gemma_embeddings_stay_tied_after_loading(saved_models, arch):
    model, _ = load_causal_lm(saved_models[arch][0], device="cpu")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        model.model.embed_tokens.weight[7].zero_()
    assert model.lm_head.weight[7].abs().sum() == 0
