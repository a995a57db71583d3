"""Paper scale on one GPU: the SAE, capture, matching and pruning at the papers' sizes.

Each case runs the library code the workflow's rules call, on randomly initialised
models of the papers' dimensions (no download), and reports its time next to the
reference that bounds it, measured in the same run, plus the peak GPU memory it took:

- SAE training step at d_model 2304, 18,432 latents, k 64, batch 4,096: steps/s, the
  share of the step the encoder's forward matmul takes (the one product no TopK SAE can
  skip), the projected time of the paper's 20,000 steps;
- activation capture on a gemma-2-2b-shaped model at its cached layer 12, at the paper's
  context and batch size, on 1/``CAPTURE_SHARE`` of the paper's capture: tokens/s
  against the bare forward to the layer, and the projected time of the whole capture;
- matching two 18,432-latent dictionaries (every threshold, all three metrics) against
  the bare blocked matmul;
- magnitude, Wanda, SparseGPT and feature pruning of a Llama-3.2-1B-shaped model to 50 %
  from the paper's calibration set (300,000 tokens in windows of 256), one run each,
  against one forward pass over the same tokens.

``PAPER_SCALE_CASES`` (comma-separated: sae, matching, capture, pruning) runs only those.
Full size needs CUDA (``skipped`` otherwise). The tiny size runs the same code on tiny
shapes, on CUDA when present, else on the CPU, so the cases stay exercised without a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

from bench import capture, matching, pruning, sae_step
from bench.harness import target
from prunescope.matching import match_dictionaries

SAE_SHAPE = sae_step.GPU_SHAPE
SAE_STEPS = 20_000
MATCH_LATENTS, MATCH_D_MODEL = 18_432, 2_304
CAPTURE_SHARE = 32
"""The capture case writes 1/32 of the paper's 1.8 M tokens (about 0.5 GB of float32)."""
PAPER_CAPTURE = {"context": 256, "batch_size": 16, "train_tokens": 1_500_000}
PAPER_CAPTURE["eval_tokens"] = 300_000
PAPER_CAPTURE["stats_samples"] = 50_000
PAPER_CALIBRATION = {"n_tokens": 300_000, "context": 256, "batch_size": 8}
PAPER_OPTIONS = {"wanda": {"granularity": "row"}, "sparsegpt": {"blocksize": 128, "percdamp": 0.01}}
LLAMA_3_2_1B = {
    "vocab_size": 128_256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "max_position_embeddings": 131_072,
    "rope_theta": 500_000.0,
    "tie_word_embeddings": True,
}
"""meta-llama/Llama-3.2-1B's config.json dimensions (1,235,814,400 parameters)."""
TINY_LLAMA = {**LLAMA_3_2_1B, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128}
TINY_LLAMA.update(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
TINY_GEMMA = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "head_dim": 16}
TINY_GEMMA.update(num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2)
SAE_BOUND_S = 600.0
"""The paper's 20,000-step SAE should take at most 10 minutes on one H200."""


def gpu_peak(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(seconds, peak GPU bytes allocated) of one call of ``fn``; peak 0 on the CPU."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return seconds, float(torch.cuda.max_memory_allocated()) if cuda else 0.0


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sae_case(shape: dict, device: torch.device, repeats: int) -> dict:
    """Our step against the encoder matmul and against a plain TopK SAE, with peak memory."""
    bound = sae_step.encoder_bound(shape, device, steps=SAE_STEPS, repeats=repeats)
    ours, _ = sae_step.contenders(shape, device)
    _, peak = gpu_peak(ours, device)
    versus = sae_step.compare(shape, device, repeats)
    release(device)
    return {
        "case": f"SAE step, {device.type}",
        **bound,
        "steps_per_s": 1.0 / bound["ours_step_s"],
        "peak_gpu_bytes": peak,
        "reference_step_s": versus["reference_step_s"],
        "speedup_vs_plain_topk": versus["speedup"],
    }


def capture_setting(architecture: dict, layer: int, share: int, paper: dict) -> dict:
    context = paper["context"]
    return {
        "architecture": architecture,
        "vocab_size": architecture["vocab_size"],
        "layer": layer,
        "context": context,
        "batch_size": paper["batch_size"],
        "train_windows": paper["train_tokens"] // context // share,
        "eval_windows": paper["eval_tokens"] // context // share,
        "stats_samples": paper["stats_samples"] // share,
        "skip_positions": 1,
    }


def gemma2(architecture: dict, device: torch.device) -> torch.nn.Module:
    """A randomly initialised Gemma 2 (``architecture`` over gemma-2-2b's defaults)."""
    torch.manual_seed(0)
    with device:
        return Gemma2ForCausalLM(Gemma2Config(**architecture)).eval()


def capture_case(setting: dict, device: torch.device, share: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-paper-capture-"))
    try:
        measured, peak = capture_with_peak(gemma2(setting["architecture"], device), setting, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    release(device)
    return {
        "case": f"capture, gemma-2-2b shape, {device.type}",
        **measured,
        "share_of_paper_capture": 1 / share,
        "projected_paper_capture_s": measured["capture_s"] * share,
        "peak_gpu_bytes": peak,
    }


def capture_with_peak(model, setting: dict, folder: Path) -> tuple[dict, float]:
    """The capture against the forward (interleaved), then one more capture for its peak."""
    device = next(model.parameters()).device
    measured = capture.end_to_end(setting, device, folder, repeats=2, model=model)
    splits = capture.token_windows(setting)
    _, peak = gpu_peak(
        lambda: capture.capture_once(model, setting, splits, folder / "peak.h5"), device
    )
    return measured, peak


def matching_case(n: int, d: int, device: torch.device) -> dict:
    """One timed match after a warm-up, against the blocked matmul, with peak memory."""
    measured = matching.measure_size(n, d, device.type, repeats=2, warmup=1)
    a, b = matching.seed_pair(n, d, seed=n)
    _, peak = gpu_peak(lambda: match_dictionaries(a, b, device=device.type), device)
    release(device)
    keep = ("match_median_s", "matmul_median_s", "match_over_matmul", "matmul_gflops")
    return {
        "case": f"match {n}x{n} d={d}, {device.type}",
        **{key: measured[key] for key in keep},
        "candidates_per_pair": measured["candidates_per_pair"],
        "peak_gpu_bytes": peak,
    }


def pruning_case(architecture: dict, calibration: dict, device: torch.device) -> dict:
    """Each method once (dense weights restored before it), with its peak GPU memory."""
    torch.manual_seed(0)
    with device:
        model = LlamaForCausalLM(LlamaConfig(**architecture)).eval()
    setting = {
        "vocab_size": architecture["vocab_size"],
        "calibration": calibration,
        "options": PAPER_OPTIONS,
        "expansion": 8,
    }
    fns = pruning.contenders(model, setting, device)
    measured = {}
    for name, fn in fns.items():
        measured[name] = gpu_peak(fn, device)
        print(f"  {name}: {measured[name][0]:.1f} s, peak {measured[name][1] / 1e9:.1f} GB")
    fns["restore"]()
    n_parameters = sum(p.numel() for p in model.parameters())
    del model, fns
    release(device)
    forward_s = measured["forward"][0]
    methods = [name for name in measured if name in pruning.METHODS]
    return {
        "case": f"pruning, Llama-3.2-1B shape, {device.type}",
        "n_parameters": n_parameters,
        "calibration_tokens": calibration["n_tokens"],
        "forward_s": forward_s,
        **{f"{name}_s": measured[name][0] for name in methods},
        **{f"{name}_vs_forward": measured[name][0] / forward_s for name in methods},
        **{f"{name}_peak_gpu_bytes": measured[name][1] for name in methods},
    }


def reported(measure: Callable[[], dict]) -> dict:
    """Run one case and print its scalar fields at once, so a run stopped by a time limit
    still shows the cases it finished."""
    case = measure()
    print(json.dumps({key: value for key, value in case.items() if np.isscalar(value)}), flush=True)
    return case


def run(size: str) -> dict:
    full = size == "full"
    if full and not torch.cuda.is_available():
        return {"cases": [{"case": "paper scale", "skipped": "no CUDA device"}], "targets": []}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    share = CAPTURE_SHARE if full else 4096
    paper = PAPER_CAPTURE if full else {**PAPER_CAPTURE, "context": 16, "batch_size": 4}
    gemma = Gemma2Config().to_dict() if full else TINY_GEMMA
    gemma = {key: gemma[key] for key in TINY_GEMMA}
    calibration = PAPER_CALIBRATION if full else {**PAPER_CALIBRATION, "n_tokens": 64}
    calibration = calibration if full else {**calibration, "context": 16}
    sae = SAE_SHAPE if full else sae_step.TINY_SHAPE
    match_shape = (MATCH_LATENTS, MATCH_D_MODEL) if full else (256, 32)
    gemma_setting = capture_setting(gemma, 12 if full else 2, share, paper)
    measures = {
        "sae": lambda: sae_case(sae, device, repeats=10 if full else 2),
        "matching": lambda: matching_case(*match_shape, device),
        "capture": lambda: capture_case(gemma_setting, device, share),
        "pruning": lambda: pruning_case(LLAMA_3_2_1B if full else TINY_LLAMA, calibration, device),
    }
    chosen = os.environ.get("PAPER_SCALE_CASES", ",".join(measures)).split(",")
    unknown = set(chosen) - set(measures)
    if unknown:
        raise ValueError(f"PAPER_SCALE_CASES names {sorted(unknown)}; known: {list(measures)}")
    cases = [reported(measure) for name, measure in measures.items() if name in chosen]
    targets = [
        target("SAE, 20,000 steps (s)", case["projected_run_s"], SAE_BOUND_S, "<=")
        for case in cases
        if "projected_run_s" in case
    ]
    return {"cases": cases, "targets": targets, "gpu": torch.cuda.is_available()}
