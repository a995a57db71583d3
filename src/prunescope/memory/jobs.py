"""The config's heavy jobs, in pipeline order, and one job's estimate from its rule and
wildcards (what Snakemake's ``mem_mb`` asks for)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping

from prunescope.align.methods import BASIS_METHODS
from prunescope.conditions import model_grid
from prunescope.memory import align_jobs, lm_jobs, sae_jobs
from prunescope.memory.estimate import Estimate
from prunescope.memory.shapes import ModelShape, hub_shape, local_shape

# Pipeline order: the first job of a config that cannot fit is the one reported.
LM_JOBS = (
    "train_local_model",
    "prune_model",
    "evaluate_perplexity",
    "capture_activations",
    "train_sae",
    "match_dictionaries",
    "activation_survival",
    "reverse_survival",
)
ALIGN_JOBS = (
    "estimate_align_hessian",
    "prune_align_nets",
    "solve_align_mip",
    "finetune_align_nets",
)
HEAVY_JOBS = LM_JOBS + ALIGN_JOBS

SIZED_BY_SHAPE = {
    "evaluate_perplexity": lm_jobs.evaluate_perplexity_memory,
    "capture_activations": lm_jobs.capture_activations_memory,
}
"""A model's jobs after pruning that its whole shape sizes, in pipeline order."""
SIZED_BY_WIDTH = {
    "train_sae": sae_jobs.train_sae_memory,
    "match_dictionaries": sae_jobs.match_dictionaries_memory,
    "activation_survival": sae_jobs.activation_survival_memory,
    "reverse_survival": sae_jobs.reverse_survival_memory,
}
"""A model's dictionary jobs, sized by its residual width (d_model), in pipeline order."""
PER_STRUCTURE = {
    "prune_align_nets": align_jobs.prune_align_nets_memory,
    "solve_align_mip": align_jobs.solve_align_mip_memory,
    "finetune_align_nets": align_jobs.finetune_align_nets_memory,
}
"""Study ALIGN's jobs run once per task and structure."""


def _model_shape(config: dict, model: str, shapes: Mapping[str, ModelShape]) -> ModelShape | None:
    return shapes.get(model) or local_shape(config, model)


def model_estimates(config: dict, model: str, shape: ModelShape) -> Iterator[Estimate]:
    """The heavy jobs of one model, in pipeline order."""
    if config["models"][model]["source"] == "local":
        yield lm_jobs.train_local_model_memory(config, model)
    for method in model_grid(config, model):
        yield lm_jobs.prune_model_memory(config, model, method, shape)
    for estimate in SIZED_BY_SHAPE.values():
        yield estimate(config, model, shape)
    for estimate in SIZED_BY_WIDTH.values():
        yield estimate(config, model, shape.hidden_size)


def align_estimates(config: dict) -> Iterator[Estimate]:
    align = config.get("align")
    if not align:
        return
    for task in align["tasks"]:
        yield align_jobs.estimate_align_hessian_memory(config, task)
        for structure in align["structures"]:
            yield align_jobs.prune_align_nets_memory(config, task, structure)
            if {"mip", "flo", "mip_mask", *BASIS_METHODS} & set(align["methods"]):
                yield align_jobs.solve_align_mip_memory(config, task, structure)
            yield align_jobs.finetune_align_nets_memory(config, task, structure)


def config_estimates(
    config: dict, shapes: Mapping[str, ModelShape] | None = None
) -> list[Estimate]:
    """Every heavy job's estimate (one per distinct size), pipeline order within each study.
    Hub models are left out unless ``shapes`` gives their shape."""
    shapes = shapes or {}
    found = []
    for model in config["models"]:
        shape = _model_shape(config, model, shapes)
        if shape is not None:
            found += model_estimates(config, model, shape)
    order = {rule: i for i, rule in enumerate(HEAVY_JOBS)}
    found.sort(key=lambda e: order[e.rule])
    return found + list(align_estimates(config))


def job_estimate(
    config: dict, rule: str, wildcards: Mapping[str, str], shape: ModelShape | None = None
) -> Estimate | None:
    """One job's estimate from its rule and wildcards; None for a hub model without ``shape``."""
    if rule in ALIGN_JOBS:
        task = wildcards["task"]
        if rule == "estimate_align_hessian":
            return align_jobs.estimate_align_hessian_memory(config, task)
        return PER_STRUCTURE[rule](config, task, wildcards["structure"])
    model = wildcards["model"]
    if rule == "train_local_model":
        return lm_jobs.train_local_model_memory(config, model)
    shape = shape or local_shape(config, model)
    if shape is None:
        return None
    if rule == "prune_model":
        return lm_jobs.prune_model_memory(config, model, wildcards["method"], shape)
    if rule in SIZED_BY_SHAPE:
        return SIZED_BY_SHAPE[rule](config, model, shape)
    if rule in SIZED_BY_WIDTH:
        return SIZED_BY_WIDTH[rule](config, model, shape.hidden_size)
    raise ValueError(f"no memory estimate for rule {rule!r}; heavy rules are {list(HEAVY_JOBS)}")


def job_mem_mb(
    config: dict,
    rule: str,
    wildcards: Mapping[str, str],
    inputs: list[str],
    known_shapes: dict[str, ModelShape],
) -> int | None:
    """A job's ``mem_mb`` for Snakemake: its estimate, in MB.

    A hub model is sized from ``known_shapes`` (what the dry-run found) or, once its
    config.json is on this machine, from that, which is then kept in ``known_shapes``.
    While neither is there and the job's inputs are not built, ``FileNotFoundError`` tells
    Snakemake to ask again when the job is ready (a dry-run shows ``<TBD>``).
    """
    model = wildcards.get("model")
    shape = None
    if model is not None and config["models"][model]["source"] == "hf":
        shape = known_shapes.get(model) or hub_shape(config, model)
        if shape is None:
            missing = [path for path in inputs if not os.path.exists(path)]
            if missing:
                raise FileNotFoundError(errno.ENOENT, "not built yet", missing[0])
            return None
        known_shapes[model] = shape
    estimate = job_estimate(config, rule, wildcards, shape)
    return None if estimate is None else estimate.mem_mb
