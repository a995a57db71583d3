"""The check that refuses a config whose heavy jobs cannot fit, and the memory each job
will have: its ``--set-resources`` mem_mb, this machine's RAM, or the GPU it runs on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from prunescope.errors import UserInputError
from prunescope.memory.estimate import Estimate, Term
from prunescope.memory.jobs import HEAVY_JOBS, config_estimates, model_estimates
from prunescope.memory.shapes import ModelShape
from prunescope.memory.sizes import GB, MB, RUNTIME_BYTES


def machine_memory() -> int:
    """This machine's physical RAM in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class Budget:
    """The memory a job will have, and where that figure comes from (for the message)."""

    bytes: int
    source: str


def set_resources_mem_mb(overwrite_resources: Mapping[str, Mapping]) -> dict[str, int]:
    """The ``mem_mb`` each rule gets from ``--set-resources`` (a profile's ``set-resources``),
    where it is a number: plain values, or Snakemake's parsed ``Resource`` objects."""
    found = {}
    for rule, resources in overwrite_resources.items():
        value = resources.get("mem_mb")
        try:
            value = getattr(value, "value", value)  # a Resource; an expression has no value yet
        except ValueError:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[rule] = int(value)
    return found


def job_budgets(declared_mem_mb: Mapping[str, int], machine_bytes: int) -> dict[str, Budget]:
    """The memory each heavy rule's jobs will have.

    A rule given ``mem_mb`` by ``--set-resources`` (a cluster profile's ``set-resources``)
    gets that much from the scheduler on a cluster, so that is its budget; on a local run,
    where Snakemake does not enforce ``mem_mb``, it is still the most the user said it may
    take. Every other rule (asking for its own estimate) is held against this machine's RAM,
    where a local run executes it.
    """
    budgets = {}
    for rule in HEAVY_JOBS:
        if rule in declared_mem_mb:
            mem_mb = declared_mem_mb[rule]
            budgets[rule] = Budget(mem_mb * MB, f"its set-resources mem_mb {mem_mb:,} gives")
        else:
            budgets[rule] = Budget(machine_bytes, "this machine has")
    return budgets


def check_estimate(estimate: Estimate, budget: Budget) -> None:
    """Raise ``UserInputError`` when ``estimate`` exceeds ``budget``: one sentence with the
    job, its estimate and largest part, the memory it will have and the keys to lower."""
    if estimate.bytes <= budget.bytes:
        return
    largest = estimate.largest() if estimate.terms else None
    if largest is None or largest.bytes < RUNTIME_BYTES:
        # no key of the config can help: the job's libraries alone take this much
        part, advice = Term("Python, torch and the libraries every job loads", RUNTIME_BYTES), ""
    else:
        part, advice = largest, f"; lower {' or '.join(estimate.keys())}"
    raise UserInputError(
        f"{estimate.job} would need about {_gb(estimate.bytes)} (largest part: {part.what}, "
        f"{_gb(part.bytes)}) but {budget.source} {_gb(budget.bytes)}{advice}"
    )


def check_memory(
    config: dict,
    available: int | Mapping[str, Budget],
    shapes: Mapping[str, ModelShape] | None = None,
) -> None:
    """Refuse a config whose heavy jobs cannot fit, before any job runs.

    ``available``: bytes every job may use (this machine's RAM), or per rule a ``Budget``
    (``job_budgets``). Hub models are checked only when ``shapes`` gives their shape (a job
    holding the model's config.json: ``ModelShape.from_hf_config``). Raises
    ``UserInputError`` for the first job, in pipeline order, that would not fit.
    """
    if isinstance(available, int):
        available = {rule: Budget(available, "this machine has") for rule in HEAVY_JOBS}
    for estimate in config_estimates(config, shapes):
        budget = available.get(estimate.rule)
        if budget is not None:
            check_estimate(estimate, budget)


def check_on_device(estimate: Estimate, device) -> None:
    """In a running job: hold ``estimate`` against the GPU it runs on (its total memory; the
    runtime share stands for the CUDA context there), or this machine's RAM on a CPU.
    Imports torch, so only for jobs."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        check_estimate(estimate, Budget(total, f"GPU {index} has"))
        return
    check_estimate(estimate, Budget(machine_memory(), "this machine has"))


def check_hub_model(config: dict, model: str, hf_config: Mapping, device) -> None:
    """For the first job holding a hub model's ``config.json`` (as a dict): every heavy job of
    that model, now that its widths are known, held against ``device`` (``check_on_device``)."""
    shape = ModelShape.from_hf_config(hf_config, model)
    for estimate in model_estimates(config, model, shape):
        check_on_device(estimate, device)


def _gb(n_bytes: float) -> str:
    if n_bytes >= 10_000 * GB:
        return f"{n_bytes / 1000 / GB:,.1f} TB"
    return f"{n_bytes / GB:,.1f} GB"
