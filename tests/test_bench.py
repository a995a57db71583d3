"""Every benchmark runs at its tiny size and returns a well-formed record.

No wall time is asserted: speed is judged by ``python -m bench`` as ratios against a
reference measured in the same run, never by a test.
"""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch

from bench.__main__ import BENCHMARKS, main
from bench.harness import interleaved_medians, median_seconds, target


@pytest.mark.parametrize(
    "name",
    # the DAG benchmark times Snakemake's own dry-runs
    [pytest.param(n, marks=pytest.mark.workflow) if n == "dag" else n for n in BENCHMARKS],
)
def test_benchmark_runs_tiny(name):
    record = importlib.import_module(f"bench.{name}").run("tiny")
    assert record["cases"], f"{name} measured no case"
    assert isinstance(record["targets"], list)
    for row in record["targets"]:
        assert set(row) >= {"target", "value", "bound", "kind", "met"}
        assert math.isfinite(row["value"])
    json.dumps(record)


def test_target_compares_in_the_stated_direction():
    assert target("speed-up", 2.5, 2.0, ">=")["met"]
    assert not target("speed-up", 1.5, 2.0, ">=")["met"]
    assert target("seconds", 5.0, 10.0, "<=")["met"]
    assert not target("seconds", 11.0, 10.0, "<=")["met"]
    with pytest.raises(ValueError, match="kind"):
        target("x", 1.0, 1.0, ">")


def test_medians_count_every_call():
    calls = []
    result = median_seconds(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(result["samples_s"]) == 3
    both = interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: None}, repeats=4)
    assert calls.count("a") == 5 and len(both["b"]["samples_s"]) == 4


def test_the_gemma_case_has_gemma_2_2b_s_published_size():
    """bench.pruning builds gemma-2-2b from transformers' Gemma2Config defaults."""
    from bench.pruning import gemma2_2b

    model = gemma2_2b(torch.device("meta"))
    assert sum(p.numel() for p in model.parameters()) == 2_614_341_888


def test_the_llama_case_has_llama_3_2_1b_s_published_size():
    """bench.paper_scale's Llama-3.2-1B dimensions give its published parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.paper_scale import LLAMA_3_2_1B

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**LLAMA_3_2_1B))
    assert sum(p.numel() for p in model.parameters()) == 1_235_814_400


def test_paper_scale_without_cuda_skips_the_full_size(monkeypatch):
    from bench import paper_scale

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    record = paper_scale.run("full")
    assert record["cases"][0]["skipped"] == "no CUDA device" and record["targets"] == []


def test_runner_rejects_unknown_benchmark(capsys):
    with pytest.raises(SystemExit):
        main(["no-such-benchmark"])
    assert "invalid choice" in capsys.readouterr().err
