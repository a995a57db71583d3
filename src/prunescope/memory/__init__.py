"""How much memory the heavy jobs will need, from the config alone, checked before any job runs.

Each estimate is the peak resident memory of one job, in bytes, derived from the shapes the
config sets: what the job holds for its whole run (weights, optimiser state, buffers) plus
the largest of its phases (a forward batch, a Hessian inverse, a resampling step), each term
named with the config keys that size it. They are upper-ish bounds of what the library
functions really allocate (tests/test_memory.py measures them), plus ``RUNTIME_BYTES`` for
the interpreter, torch and the other libraries every job loads.

The same numbers serve twice: ``check_memory`` refuses a config whose largest jobs cannot fit,
before the first job starts, naming the key to change; and the rule files declare ``mem_mb``
from them, which is what a cluster profile asks the scheduler for.

Which memory a job will have (``job_budgets``): a rule given ``mem_mb`` by ``--set-resources``
(a cluster profile's ``set-resources``) gets exactly that on a cluster, so the check holds its
estimate against it; every other rule is held against this machine's RAM, where a local run
executes it. A job on a GPU keeps most of these bytes in GPU memory instead; the check at
planning time cannot see the GPU (and must not import torch), so ``check_on_device`` lets a
running job hold its estimate against the device it got.

A hub model's widths are not in the config: its jobs are skipped here until a job holding the
model's ``config.json`` passes its shape (``ModelShape.from_hf_config``) to ``check_memory``.

Nothing here imports torch or numpy: Snakemake's main process imports this module to plan.

- ``sizes``: the units and the sizes the library fixes.
- ``estimate``: Term and Estimate, a job's peak as named parts.
- ``shapes``: ModelShape, a decoder's widths from the config or its config.json.
- ``lm_jobs``: training a model here, pruning, perplexity, capturing activations.
- ``sae_jobs``: training an SAE, matching dictionaries, activation survival.
- ``align_jobs``: Study ALIGN's Hessian, pruning, MIP and fine-tuning.
- ``jobs``: the config's heavy jobs and one job's mem_mb.
- ``check``: the budgets and the check that refuses what cannot fit.
"""

from prunescope.memory.align_jobs import (
    estimate_align_hessian_memory,
    finetune_align_nets_memory,
    prune_align_nets_memory,
    solve_align_mip_memory,
)
from prunescope.memory.check import (
    Budget,
    check_estimate,
    check_hub_model,
    check_memory,
    check_on_device,
    job_budgets,
    machine_memory,
    set_resources_mem_mb,
)
from prunescope.memory.estimate import Estimate, Term
from prunescope.memory.jobs import (
    ALIGN_JOBS,
    HEAVY_JOBS,
    LM_JOBS,
    align_estimates,
    config_estimates,
    job_estimate,
    job_mem_mb,
    model_estimates,
)
from prunescope.memory.lm_jobs import (
    capture_activations_memory,
    evaluate_perplexity_memory,
    prune_model_memory,
    train_local_model_memory,
)
from prunescope.memory.sae_jobs import (
    activation_survival_memory,
    match_dictionaries_memory,
    reverse_survival_memory,
    train_sae_memory,
)
from prunescope.memory.shapes import ModelShape, hub_shape, hub_shapes, local_shape
from prunescope.memory.sizes import GB, MB, RUNTIME_BYTES

__all__ = [
    "ALIGN_JOBS",
    "GB",
    "HEAVY_JOBS",
    "LM_JOBS",
    "MB",
    "RUNTIME_BYTES",
    "Budget",
    "Estimate",
    "ModelShape",
    "Term",
    "activation_survival_memory",
    "align_estimates",
    "capture_activations_memory",
    "check_estimate",
    "check_hub_model",
    "check_memory",
    "check_on_device",
    "config_estimates",
    "estimate_align_hessian_memory",
    "evaluate_perplexity_memory",
    "finetune_align_nets_memory",
    "hub_shape",
    "hub_shapes",
    "job_budgets",
    "job_estimate",
    "job_mem_mb",
    "local_shape",
    "machine_memory",
    "match_dictionaries_memory",
    "model_estimates",
    "prune_align_nets_memory",
    "prune_model_memory",
    "reverse_survival_memory",
    "set_resources_mem_mb",
    "solve_align_mip_memory",
    "train_local_model_memory",
    "train_sae_memory",
]
