"""Pruning: wall time of magnitude, Wanda, SparseGPT and feature pruning against a forward pass.

Each method prunes a randomly initialised model to 50 % with the default config's
settings (Wanda per row; SparseGPT blocks of 128 columns, 1 % dampening) from random
token ids of the default calibration size, context and batch size. The reference is the
bare forward pass of the same model over the same calibration batches, timed in
alternation with the methods. Every timed pruning call first copies the dense weights
back into the linears it prunes (``restore_s``, timed on its own, is included).

Feature pruning gets a random feature basis of the default SAE width (``sae.expansion``
times the stream width, energy-weighted) for both sites of every block, as the workflow
would, read from memory rather than from disk; its target is at most twice SparseGPT's
time on the same model in the same run.

On CPU the model is the default config's tiny Llama; with CUDA, also a model of
gemma-2-2b's published dimensions (float32, as in the paper preset), with no download.
"""

from __future__ import annotations

import torch
from transformers import Gemma2Config, Gemma2ForCausalLM

from bench.harness import (
    TINY_ARCHITECTURE,
    default_config,
    interleaved_medians,
    random_llama,
    target,
    tiny_model_shape,
)
from prunescope.architectures import SITES, feature_sites_of, stream_width
from prunescope.feature_pruning.basis import FeatureBasis
from prunescope.models import decoder_layers, prunable_linears
from prunescope.pruning import prune_model

SPARSITY = 0.5
METHODS = ("magnitude", "wanda", "sparsegpt", "feature")
FEATURE_VS_SPARSEGPT = 2.0
TINY = {
    "architecture": TINY_ARCHITECTURE,
    "vocab_size": 256,
    "calibration": {"n_tokens": 256, "context": 16, "batch_size": 8},
    "options": {"wanda": {"granularity": "row"}, "sparsegpt": {"blocksize": 128, "percdamp": 0.01}},
    "expansion": 8,
}


def default_setting() -> dict:
    """The default config's tiny model shape, calibration and method options."""
    config = default_config()
    return {
        **tiny_model_shape(config),
        "calibration": config["pruning"]["calibration"],
        "options": {name: config["pruning"][name] for name in ("wanda", "sparsegpt")},
        "expansion": config["sae"]["expansion"],
    }


def random_bases(model: torch.nn.Module, expansion: int) -> list[FeatureBasis]:
    """One random basis per site of every block: ``expansion x width`` unit directions
    (one tensor shared by all, to spare memory) with random energies."""
    width = stream_width(model)
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(expansion * width, width, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    energy = torch.rand(expansion * width, generator=generator, dtype=torch.float64)
    sites = feature_sites_of(model)
    return [
        FeatureBasis(
            directions=directions,
            energy=energy,
            firing_rate=energy,
            features=torch.arange(len(energy)),
            block=block,
            site=site,
            projections=sites[site].projections,
        )
        for block in range(len(decoder_layers(model)))
        for site in SITES
    ]


def calibration_ids(vocab_size: int, calibration: dict) -> torch.Tensor:
    n_windows = calibration["n_tokens"] // calibration["context"]
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (n_windows, calibration["context"]), generator=generator)


def contenders(model: torch.nn.Module, setting: dict, device: torch.device) -> dict:
    """Closures over ``model``: the calibration forward, the restoring of its dense weights,
    and each of ``METHODS`` (which restores the dense weights first)."""
    ids = calibration_ids(setting["vocab_size"], setting["calibration"])
    batch_size = setting["calibration"]["batch_size"]
    linears = list(prunable_linears(model).values())
    dense = [module.weight.detach().clone() for module in linears]

    def restore() -> None:
        with torch.no_grad():
            for module, weight in zip(linears, dense, strict=True):
                module.weight.copy_(weight)

    def forward() -> None:
        with torch.no_grad():
            for start in range(0, len(ids), batch_size):
                model(input_ids=ids[start : start + batch_size].to(device), use_cache=False)

    bases = random_bases(model, setting["expansion"])

    def prune(method: str):
        options = setting["options"].get(method, {})
        if method == "feature":
            options = {**setting["options"]["sparsegpt"], "feature_bases": bases}

        def call() -> None:
            restore()
            prune_model(
                model, method, SPARSITY, ids, batch_size=batch_size, device=device, **options
            )

        return call

    fns = {"forward": forward, "restore": restore}
    fns.update({method: prune(method) for method in METHODS})
    return fns


def compare(model: torch.nn.Module, setting: dict, device: torch.device, repeats: int) -> dict:
    """Each method (after restoring the dense weights) and the forward pass, interleaved."""
    calibration = setting["calibration"]
    batch_size = calibration["batch_size"]
    dense = [module.weight for module in prunable_linears(model).values()]
    fns = contenders(model, setting, device)
    times = interleaved_medians(fns, repeats)
    fns["restore"]()
    forward_s = times["forward"]["median_s"]
    return {
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "prunable_weights": sum(w.numel() for w in dense),
        "sparsity": SPARSITY,
        "calibration_windows": calibration["n_tokens"] // calibration["context"],
        "context": calibration["context"],
        "batch_size": batch_size,
        "forward_s": forward_s,
        "restore_s": times["restore"]["median_s"],
        **{f"{method}_s": times[method]["median_s"] for method in METHODS},
        **{f"{method}_vs_forward": times[method]["median_s"] / forward_s for method in METHODS},
        "feature_vs_sparsegpt": times["feature"]["median_s"] / times["sparsegpt"]["median_s"],
        "samples_s": {name: times[name]["samples_s"] for name in times},
    }


def gemma2_2b(device: torch.device, **overrides) -> torch.nn.Module:
    """A randomly initialised model of gemma-2-2b's dimensions, built on ``device``.

    transformers' ``Gemma2Config`` defaults are google/gemma-2-2b's config.json dimensions
    (tests/test_bench.py checks its published parameter count).
    """
    torch.manual_seed(0)
    with device:
        return Gemma2ForCausalLM(Gemma2Config(**overrides)).eval()


def run(size: str) -> dict:
    full = size == "full"
    setting = default_setting() if full else TINY
    cpu = torch.device("cpu")
    cases = [
        {
            "case": "tiny Llama (default config shape), cpu" if full else "2-layer Llama, cpu",
            **compare(
                random_llama(setting["vocab_size"], setting["architecture"], cpu),
                setting,
                cpu,
                repeats=5 if full else 2,
            ),
        }
    ]
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        shape = {} if full else {"num_hidden_layers": 2, "vocab_size": 4096}
        model = gemma2_2b(gpu, **shape)
        gemma = {**setting, "vocab_size": model.config.vocab_size}
        cases.append(
            {
                "case": "gemma-2-2b shapes, random weights, cuda",
                **compare(model, gemma, gpu, repeats=3 if full else 2),
            }
        )
        del model
        torch.cuda.empty_cache()
    else:
        cases.append({"case": "gemma-2-2b shapes, cuda", "skipped": "no CUDA device"})
    targets = [
        target(
            f"feature pruning time / SparseGPT's: {case['case']}",
            case["feature_vs_sparsegpt"],
            FEATURE_VS_SPARSEGPT,
            "<=",
        )
        for case in cases
        if "feature_vs_sparsegpt" in case
    ]
    return {"cases": cases, "targets": targets, "gpu": torch.cuda.is_available()}
