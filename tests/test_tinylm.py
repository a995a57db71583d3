"""The local tokenizer and tiny Llama trainer."""

from __future__ import annotations

import math

import pytest
import torch

from prunescope.tinylm import TrainingConfig, build_llama, lr_at, train_bpe_tokenizer, train_lm

TEXT = "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int = 0\n" * 40


def test_bpe_tokenizer_round_trips_and_is_deterministic():
    first = train_bpe_tokenizer([TEXT], vocab_size=320)
    second = train_bpe_tokenizer([TEXT], vocab_size=320)
    ids = first(TEXT, add_special_tokens=False)["input_ids"]
    assert first.decode(ids) == TEXT
    assert ids == second(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(TEXT) / 2  # merges were learned
    assert first.bos_token_id is not None and first.eos_token_id is not None


def test_lr_schedule_warms_up_then_decays_to_a_tenth():
    cfg = TrainingConfig(steps=100, lr=1.0, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=0.01)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_training_learns_and_is_seeded():
    tokenizer = train_bpe_tokenizer([TEXT], vocab_size=300)
    ids = torch.tensor(tokenizer(TEXT, add_special_tokens=False)["input_ids"])
    windows = ids[: (ids.numel() // 16) * 16].view(-1, 16)
    arch = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    cfg = TrainingConfig(steps=60, batch_size=8, lr=1e-2, warmup_steps=5, log_every=10)
    reports = []
    for noise in range(2):
        torch.manual_seed(noise)  # the global RNG state must not matter
        model = build_llama(tokenizer, arch, seed=0)
        reports.append(train_lm(model, windows, windows, cfg, torch.device("cpu")))
    report = reports[0]
    assert report["loss_curve"][-1][1] < report["loss_curve"][0][1] - 1.0
    assert report["eval_perplexity"] < len(tokenizer) / 4
    assert math.isclose(report["eval_loss"], reports[1]["eval_loss"], rel_tol=1e-6)
