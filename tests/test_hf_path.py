"""The `source: hf` path end to end on a tiny random model of every supported family.

save_pretrained_copy -> load_causal_lm -> prune (Wanda, layer by layer) ->
perplexity -> residual capture into the HDF5 cache: what the workflow does
with a hub model, minus the download.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_models import DEPTH, VOCAB, tiny_tokenizer
from tiny_lms import FAMILIES_TESTED, tiny_causal_lm

from prunescope.activations import capture_activations, read_cache_info
from prunescope.checkpoints import save_pretrained_copy, save_pruned
from prunescope.models import load_causal_lm, prunable_linears
from prunescope.perplexity import perplexity
from prunescope.pruning import prune_model


@pytest.fixture(scope="module", params=list(FAMILIES_TESTED))
def hub_folder(request, tmp_path_factory):
    source = tmp_path_factory.mktemp(f"{request.param}-hub")
    tiny_causal_lm(request.param, VOCAB, num_hidden_layers=DEPTH).save_pretrained(source)
    tiny_tokenizer().save_pretrained(source)
    frozen = tmp_path_factory.mktemp(f"{request.param}-frozen") / "dense"
    save_pretrained_copy(str(source), frozen, dtype="float32")
    return frozen


def test_prune_perplexity_capture_through_the_hub_path(hub_folder, tmp_path):
    model, tokenizer = load_causal_lm(str(hub_folder), device="cpu")
    ids = torch.randint(4, VOCAB, (6, 16), generator=torch.Generator().manual_seed(1))
    embed_before = model.get_input_embeddings().weight.clone()

    report = prune_model(model, "wanda", 0.5, ids, batch_size=3)
    assert abs(report["overall_sparsity"] - 0.5) < 0.02
    assert torch.equal(model.get_input_embeddings().weight, embed_before)
    save_pruned(model, tokenizer, report, tmp_path / "wanda-0.5")

    pruned, _ = load_causal_lm(str(tmp_path / "wanda-0.5"), device="cpu")
    for name, linear in prunable_linears(pruned).items():
        zeros = (linear.weight == 0).float().mean().item()
        assert abs(zeros - 0.5) < 0.05, name

    stream = torch.randint(4, VOCAB, (200,), generator=torch.Generator().manual_seed(2))
    result = perplexity(pruned, stream, window=16, stride=15, bos_id=tokenizer.bos_token_id)
    assert math.isfinite(result["perplexity"]) and result["perplexity"] > 1

    out = tmp_path / "L1.h5"
    capture_activations(
        pruned,
        1,
        {"train": ids, "eval": ids[:2]},
        out,
        provenance={"model": "tiny", "condition": "wanda-0.5"},
        skip_positions=1,
        stats_samples=40,
    )
    info = read_cache_info(out)
    assert info["splits"]["train"] == 6 * 15
    assert info["d_model"] == pruned.config.hidden_size
    assert info["attrs"]["condition"] == "wanda-0.5"
