"""The settings a config hands the library, as dataclasses: the one source of their defaults.

A config key whose value becomes a field here (an SAE's hyperparameters under ``sae``, the
MIP's limits under ``align.mip``) or one of the paper's thresholds below takes its default
from here:
:func:`fill_library_defaults` writes it into the config before the schema
(workflow/schemas/config.schema.yaml) checks every value and fills the defaults of the keys
only the workflow reads. The library, its tests and the workflow therefore run the same
defaults. Nothing here imports more than the standard library, so the Snakefile can read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

SOLVERS = ("branch-and-bound", "scip")

PAPER_TAUS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""The paper's match thresholds (decoder cosine, and activation correlation alike)."""
PRIMARY_TAU = 0.7
"""The threshold of Table 3 and the figures."""


@dataclass
class SAEConfig:
    """Hyperparameters of one TopK SAE run; defaults follow paper section 3.2."""

    expansion: int = 8
    """Dictionary size as a multiple of the model width: d_sae = expansion * d_model."""
    k: int = 64
    """Number of latents kept per token by the TopK activation."""
    lr: float = 5e-5
    """Peak Adam learning rate, reached after warmup and annealed to 0 by a cosine."""
    steps: int = 20_000
    """Number of optimiser steps (batches) to train for."""
    batch_size: int = 4096
    """Tokens (activation rows) per optimiser step."""
    resample_every: int = 2000
    """Resample dead features every this many steps; 0 disables resampling."""
    dead_window: int | None = None
    """A feature that has not fired for this many steps counts as dead; None means
    resample_every, so a feature gets one full resampling period to fire."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warmup before the cosine, to keep the first Adam steps
    small; 0, as in the paper (which names no warmup), starts at the peak learning rate."""
    seed: int = 0
    """Seed of the decoder initialisation, data order and resampling draws."""
    eval_batch_size: int = 8192
    """Rows per batch when evaluating on the held-out split (memory only, not results)."""
    log_every: int = 100
    """Record loss and batch FVU in the loss curve every this many steps."""
    buffer_rows: int = 131_072
    """Rows of the shuffle buffer read from the cache at a time (random contiguous
    blocks, shuffled together); bounds host memory and sets how well batches mix."""

    def __post_init__(self) -> None:
        if self.dead_window is None:
            self.dead_window = self.resample_every
        counts = ("expansion", "k", "steps", "batch_size", "eval_batch_size", "log_every")
        at_least = {name: 1 for name in (*counts, "buffer_rows")}
        at_least |= {"resample_every": 0, "dead_window": 0, "warmup_steps": 0, "seed": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SAE config {name}={value!r} must be an integer >= {low}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"SAE config lr={self.lr!r} must be a positive number")
        if self.resample_every > 0 and self.dead_window < 1:
            raise ValueError("SAE config dead_window must be >= 1 when resampling is enabled")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"SAE config warmup_steps={self.warmup_steps} must be below steps={self.steps}"
            )


def check_node_limit(node_limit: int | None) -> int | None:
    if node_limit is None:
        return None
    if isinstance(node_limit, bool) or int(node_limit) != node_limit or node_limit < 1:
        raise ValueError(f"node_limit must be a positive integer or None, got {node_limit!r}.")
    return int(node_limit)


@dataclass(frozen=True)
class MipSettings:
    """Limits and solver of the per-neuron best-subset search (:func:`solve_neuron`,
    :func:`solve_layer`)."""

    time_limit: float = 30
    """Seconds per neuron, for its whole solve, warm start included."""
    node_limit: int | None = None
    """Branch-and-bound nodes per neuron (SCIP: its total node limit); None: no limit. Both
    limits apply and the first one reached stops the neuron; a solve stopped by its node
    limit alone is the same on any machine."""
    gap: float = 1e-4
    """Relative optimality gap at which the search stops: a proven ``objective`` is within
    ``gap`` of the optimum. 0 proves the optimum itself."""
    enumerate_limit: int = 20000
    """Enumerate every maximal feasible support of a row when there are at most this many."""
    rounds: int = 100
    """Rounds of the local search that improves the first search's best support when that
    search cannot finish."""
    seed: int = 0
    """Seed of the local search's random kicks and windows."""
    solver: str = "branch-and-bound"
    """``"branch-and-bound"`` (bounds independent of the conditioning of Q; a singular Q
    still goes to SCIP) or ``"scip"``, SCIP's perspective model for every row."""
    threads: int = 2
    """Neurons solved at once by :func:`solve_layer`, each in a forked worker process."""

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"MIP solver {self.solver!r} is not one of {SOLVERS}")
        object.__setattr__(self, "node_limit", check_node_limit(self.node_limit))
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}.")


SAE_CONFIG_KEYS = ("expansion", "k", "lr", "steps", "batch_size", "warmup_steps", "resample_every")
"""The SAEConfig fields a config sets under ``sae`` (the others are the library's own)."""
MIP_CONFIG_KEYS = ("time_limit", "node_limit", "gap", "solver", "enumerate_limit", "threads")
"""The MipSettings fields a config sets under ``align.mip``."""
THRESHOLD_DEFAULTS = {
    "taus": list(PAPER_TAUS),
    "correlation_taus": list(PAPER_TAUS),
    "primary_tau": PRIMARY_TAU,
    "primary_correlation_tau": PRIMARY_TAU,
}
"""The thresholds of the config's ``analysis`` block."""


def fill_library_defaults(config: dict) -> dict:
    """Give ``config`` (in place, and returned) the dataclasses' default of every key above
    it leaves out; a block that is missing or not a mapping is left for the schema to name."""
    if isinstance(config.get("sae"), dict):
        _fill(config["sae"], SAEConfig, SAE_CONFIG_KEYS)
    analysis = config.setdefault("analysis", {})
    if isinstance(analysis, dict):
        for key, value in THRESHOLD_DEFAULTS.items():
            analysis.setdefault(key, list(value) if isinstance(value, list) else value)
    align = config.get("align")
    if isinstance(align, dict):
        mip = align.setdefault("mip", {})
        if isinstance(mip, dict):
            _fill(mip, MipSettings, MIP_CONFIG_KEYS)
    return config


def _fill(block: dict, settings: type, keys: tuple[str, ...]) -> None:
    defaults = {field.name: field.default for field in fields(settings)}
    for key in keys:
        block.setdefault(key, defaults[key])
