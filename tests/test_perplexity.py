"""Sliding-window perplexity against a per-token brute force and known values."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_lms import tiny_causal_lm

from prunescope.perplexity import perplexity, sliding_windows

VOCAB = 64
BOS = 1
N_TOKENS = 23


def tiny_llama(**overrides) -> torch.nn.Module:
    return tiny_causal_lm(
        "llama", VOCAB, num_hidden_layers=2, max_position_embeddings=16, **overrides
    )


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_llama()


@pytest.fixture(scope="module")
def stream() -> torch.Tensor:
    return torch.randint(2, VOCAB, (N_TOKENS,), generator=torch.Generator().manual_seed(0))


def brute_force(model, ids: torch.Tensor, window: int, stride: int, bos_id: int | None):
    """Score each token alone: its context is its first window's tokens before it."""
    text_window = window - (bos_id is not None)
    nlls = []
    for t in range(len(ids)):
        begin = max(0, math.ceil((t - text_window + 1) / stride)) * stride
        context = ids[begin:t].tolist()
        if bos_id is not None:
            context = [bos_id, *context]
        if not context:
            continue
        with torch.no_grad():
            logits = model(torch.tensor([context])).logits[0, -1].double()
        nlls.append(-torch.log_softmax(logits, dim=-1)[ids[t]].item())
    return sum(nlls) / len(nlls), len(nlls)


def test_windows_score_every_position_once_with_bounded_context():
    assert sliding_windows(10, text_window=4, stride=2) == [
        (0, 4, 0),
        (2, 6, 4),
        (4, 8, 6),
        (6, 10, 8),
    ]
    assert sliding_windows(10, text_window=4, stride=4) == [(0, 4, 0), (4, 8, 4), (8, 10, 8)]
    for n, width, stride in [(1, 3, 1), (17, 5, 5), (17, 5, 2), (17, 5, 1), (5, 8, 3)]:
        plan = sliding_windows(n, text_window=width, stride=stride)
        scored = [t for begin, end, first in plan for t in range(first, end)]
        assert scored == list(range(n))
        assert all(begin <= first and end - begin <= width for begin, end, first in plan)


@pytest.mark.parametrize(
    ("window", "stride", "bos_id", "expected_scored"),
    [
        (8, 8, None, N_TOKENS - 3),  # windows [0,8) [8,16) [16,23): each first token unscored
        (8, 3, None, N_TOKENS - 1),  # only the stream's first token lacks context
        (8, 7, BOS, N_TOKENS),  # BOS gives every text token a context
        (8, 3, BOS, N_TOKENS),
        (2, 1, None, N_TOKENS - 1),  # bigram context
    ],
)
def test_matches_per_token_brute_force(model, stream, window, stride, bos_id, expected_scored):
    result = perplexity(model, stream, window=window, stride=stride, bos_id=bos_id, batch_size=2)
    nll, count = brute_force(model, stream, window, stride, bos_id)
    assert result["n_tokens_scored"] == count == expected_scored
    assert result["nll"] == pytest.approx(nll, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert (result["window"], result["stride"]) == (window, stride)


def test_batch_size_does_not_change_the_result(model, stream):
    results = [
        perplexity(model, stream, window=6, stride=2, bos_id=BOS, batch_size=size)
        for size in (1, 3, 64)
    ]
    for other in results[1:]:
        assert other["nll"] == pytest.approx(results[0]["nll"], rel=1e-6)
        assert other["n_tokens_scored"] == results[0]["n_tokens_scored"]


def test_uniform_logits_give_the_vocabulary_size():
    uniform = tiny_llama(tie_word_embeddings=False)
    with torch.no_grad():
        uniform.lm_head.weight.zero_()
    ids = torch.randint(0, VOCAB, (40,), generator=torch.Generator().manual_seed(1))
    result = perplexity(uniform, ids, window=16, stride=5, bos_id=BOS)
    assert result["perplexity"] == pytest.approx(VOCAB, rel=1e-6)
    assert result["nll"] == pytest.approx(math.log(VOCAB), rel=1e-6)


def test_bad_arguments_are_refused(model, stream):
    cases = [
        (dict(window=8, stride=9, bos_id=None), "stride 9"),
        (dict(window=8, stride=8, bos_id=BOS), "stride 8 must be in 1..7"),
        (dict(window=32, stride=8, bos_id=None), "exceeds the model's 16 positions"),
        (dict(window=1, stride=1, bos_id=None), "window 1"),
        (dict(window=8, stride=4, bos_id=VOCAB), "bos_id"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            perplexity(model, stream, **kwargs)
    with pytest.raises(ValueError, match="1-D"):
        perplexity(model, stream[None], window=8, stride=8, bos_id=None)
    with pytest.raises(ValueError, match="vocabulary"):
        perplexity(model, stream + VOCAB, window=8, stride=8, bos_id=None)
    with pytest.raises(ValueError, match="no token of the 1-token stream"):
        perplexity(model, stream[:1], window=8, stride=8, bos_id=None)
    assert perplexity(model, stream[:1], window=8, stride=7, bos_id=BOS)["n_tokens_scored"] == 1
