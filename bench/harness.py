"""What every benchmark shares: timing by medians, machine facts, targets, JSON output.

A benchmark module exposes ``run(size: str) -> dict`` with ``size`` one of ``SIZES``.
The dict it returns is the benchmark's record: free-form ``cases`` (one dict per measured
configuration) and a list of ``targets`` built with ``target()``. The runner adds the
machine description and writes the record to ``results/bench/{name}.json``.

These machines are noisy, so a speed is only ever reported next to a reference measured
in the same process a moment before or after, as a ratio of medians over repeats.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"
TINY_ARCHITECTURE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 64,
    "tie_word_embeddings": True,
}
"""The Llama shape of the tiny benchmark sizes: seconds per case on CPU."""

SIZES = ("tiny", "full")
"""``tiny`` keeps every benchmark working in seconds (CI); ``full`` is the targets' scale."""


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls.

    CUDA work is synchronised before each clock read, so a GPU time is the kernel time and
    not the launch time.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        _synchronise()
        gc.collect()
        started = time.perf_counter()
        fn()
        _synchronise()
        samples.append(time.perf_counter() - started)
    return {"median_s": statistics.median(samples), "samples_s": samples}


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1):
    """Median seconds of each of ``fns``, timed in alternation so that a slow spell of
    the machine hits every contender alike rather than whichever ran during it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _synchronise()
            started = time.perf_counter()
            fn()
            _synchronise()
            samples[name].append(time.perf_counter() - started)
    return {
        name: {"median_s": statistics.median(times), "samples_s": times}
        for name, times in samples.items()
    }


def _synchronise() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def target(name: str, value: float, bound: float, kind: str, unit: str = "") -> dict:
    """One performance target: ``kind`` is ">=" (value must reach bound) or "<="."""
    if kind not in (">=", "<="):
        raise ValueError(f"target kind {kind!r} must be '>=' or '<='")
    met = value >= bound if kind == ">=" else value <= bound
    return {"target": name, "value": value, "bound": bound, "kind": kind, "unit": unit, "met": met}


def default_config() -> dict:
    """The workflow's default config.yaml, whose shapes the full-size cases use."""
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def tiny_model_shape(config: dict) -> dict:
    """The ``tiny`` model of a workflow config as the benchmarks build it: its Llama
    ``architecture`` and its tokenizer's ``vocab_size``."""
    model = config["models"]["tiny"]
    return {"architecture": model["architecture"], "vocab_size": model["tokenizer"]["vocab_size"]}


def random_llama(vocab_size: int, architecture: dict, device: torch.device) -> torch.nn.Module:
    """A Llama of the given shape, randomly initialised from seed 0, in eval mode, with the
    attention implementation ``from_pretrained`` picks for a saved model (SDPA)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, **architecture)
    return LlamaForCausalLM(config).to(device).eval()


def machine() -> dict:
    """Where the numbers were measured: CPU, cores, threads, GPU, library versions."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_bytes_of(code: str, timeout: float = 1200.0) -> tuple[str, int]:
    """Run ``code`` in a fresh Python and return (its stdout, its peak resident memory).

    A fresh interpreter is the only honest way to attribute peak memory to one operation:
    the benchmark process itself has already touched memory for other cases.
    """
    wrapped = (
        code
        + "\nimport resource, sys\n"
        + "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
        + "file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{done.stderr[-4000:]}")
    peak_kb = [line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return done.stdout, int(peak_kb[-1].split()[1]) * 1024
