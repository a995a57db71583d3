"""Study ALIGN's jobs: the Hessian over W1, pruning the nets, the MIP, and fine-tuning."""

from __future__ import annotations

import math

from prunescope.align.methods import split_method
from prunescope.memory.estimate import Estimate, Term, peak
from prunescope.memory.sizes import (
    ALIGN_EVAL_ROWS,
    DIGITS_PIXELS,
    DIGITS_SAMPLES,
    ENUMERATION_BATCH,
    FLOAT32,
    FLOAT64,
    HESSIAN_CHUNK,
    INT64,
)


def _task(config: dict, task: str) -> tuple[int, int, int, str]:
    """(width m = h = d = d_in, classes, training samples, the key that sets the width)."""
    align = config["align"]
    spec = align["tasks"][task]
    if spec["kind"] == "digits":
        n_train = math.ceil(DIGITS_SAMPLES * (1 - align["digits"]["test_fraction"]))
        return DIGITS_PIXELS, 10, n_train, f"align.tasks.{task}"
    m = spec["literals"]
    return m, 2, align["dnf"]["train_per_16_literals"] * m // 16, f"align.tasks.{task}.literals"


def _dataset_term(config: dict, task: str) -> Term:
    m, _, n_train, width_key = _task(config, task)
    align = config["align"]
    n_test = (
        align["dnf"]["test_per_16_literals"] * m // 16
        if align["tasks"][task]["kind"] == "dnf"
        else DIGITS_SAMPLES - n_train
    )
    return Term(
        f"the dataset ({n_train + n_test:,} samples x {m})",
        (n_train + n_test) * (m * FLOAT32 + INT64),
        (width_key, "align.dnf.train_per_16_literals"),
    )


def estimate_align_hessian_memory(config: dict, task: str) -> Estimate:
    """``hessian.w1_hessian`` then ``prune.damped_inverse``.

    The Hessian over W1 is (h*d)^2 float64. Building it holds one chunk's Gauss-Newton rows
    (chunk x classes x h*d) and, when symmetrising, two more (h*d)^2 arrays. The damped inverse
    then holds six: the Hessian, the damped copy, its Cholesky factor, the identity it solves
    against (copied to Fortran order), the inverse and its symmetrised copy.
    """
    m, classes, n_train, width_key = _task(config, task)
    size = m * m
    square = size * size * FLOAT64
    fraction = config["align"]["hessian"][f"{config['align']['tasks'][task]['kind']}_fraction"]
    n_sample = max(1, round(fraction * n_train))
    chunk = min(HESSIAN_CHUNK, n_sample)
    what = f"(h*d)^2 = {size:,}^2 float64"
    held = [
        _dataset_term(config, task),
        Term("the sampled inputs and features in float64", n_sample * m * (FLOAT32 + 2 * FLOAT64)),
    ]
    accumulating = [
        Term(f"the Hessian {what}", square, (width_key,)),
        Term(
            f"a chunk of {chunk:,} samples' Gauss-Newton rows",
            chunk * classes * (size + m) * FLOAT64,
            (width_key, f"align.hessian.{config['align']['tasks'][task]['kind']}_fraction"),
        ),
    ]
    symmetrising = [
        Term(f"the Hessian {what} and two symmetrised copies", 3 * square, (width_key,))
    ]
    inverting = [
        Term(
            f"the Hessian {what}, its damped inverse and their temporaries",
            6 * square,
            (width_key,),
        )
    ]
    return peak(
        "estimate_align_hessian", f"task {task}", held, accumulating, symmetrising, inverting
    )


def _variants(config: dict, structure: str) -> tuple[int, float]:
    """How many variants one structure prunes, and its highest sparsity."""
    align = config["align"]
    sparsities = [s for s in align["sparsities"] if structure != "2of4" or s >= 0.5]
    return len(sparsities) * len(align["methods"]), max(sparsities, default=0.0)


def prune_align_nets_memory(config: dict, task: str, structure: str) -> Estimate:
    """``experiment.prune_variants``: the Hessian and its inverse as read from disk, and for
    OBS and FLO the joint compensation over the p pruned weights: the inverse restricted to
    them (p^2), its Cholesky factor (p^2) and its p columns (h*d x p)."""
    m, _, _, width_key = _task(config, task)
    size = m * m
    _, top = _variants(config, structure)
    bases = {split_method(method)[0] for method in config["align"]["methods"]}
    pruned = round(top * size) if {"obs", "flo"} & bases else 0
    held = [
        _dataset_term(config, task),
        Term(
            f"the Hessian and its inverse ((h*d)^2 = {size:,}^2 float64 each)",
            2 * size * size * FLOAT64,
            (width_key,),
        ),
    ]
    compensating = [
        Term(
            f"the OBS compensation over {pruned:,} pruned weights",
            (2 * pruned * pruned + size * pruned) * FLOAT64,
            (width_key, "align.sparsities"),
        )
    ]
    return peak("prune_align_nets", f"task {task} ({structure})", held, compensating)


def _count_supports(d: int, keep: int, block: tuple[int, int] | None) -> int:
    """Supports of ``keep`` entries of d (at most n per m under a block): what the MIP
    enumerates (the same count as ``align.mip.count_supports``)."""
    if block is None:
        return math.comb(d, min(keep, d))
    n, m = block
    k = min(keep, n * (d // m))
    ways = [1] + [0] * k
    for _ in range(d // m):
        ways = [
            sum(math.comb(m, c) * ways[j - c] for c in range(min(n, j) + 1)) for j in range(k + 1)
        ]
    return ways[k]


def solve_align_mip_memory(config: dict, task: str, structure: str) -> Estimate:
    """``mip.solve_layer`` per worker process (``align.mip.threads`` of them): the branch and
    bound's depth-first path holds a downdated d x d inverse and a pair-cost matrix per level,
    up to d - keep levels; enumeration holds a batch of keep x keep systems and their factors."""
    m, _, _, width_key = _task(config, task)
    mip = config["align"]["mip"]
    block = (2, 4) if structure == "2of4" else None
    sparsities = [s for s in config["align"]["sparsities"] if block is None or s >= 0.5]
    worst = 0
    for sparsity in sparsities:
        keep = m - round(sparsity * m)
        count = _count_supports(m, keep, block)
        if count <= mip["enumerate_limit"]:
            need = 3 * min(ENUMERATION_BATCH, count) * keep * keep * FLOAT64
        else:
            need = ((m - keep) * 2 + 5) * m * m * FLOAT64
        worst = max(worst, need)
    threads = mip["threads"]
    work = [
        Term(
            f"{threads} workers' searches over rows of {m}",
            threads * worst,
            (width_key, "align.mip.threads"),
        ),
        Term("C0, W1 and C0 C0^T", 4 * m * m * FLOAT64),
    ]
    return peak("solve_align_mip", f"task {task} ({structure})", work)


def finetune_align_nets_memory(config: dict, task: str, structure: str) -> Estimate:
    """``experiment.finetune_variants`` and the metrics around it, for every variant stacked:
    the nets as read and as copied, the flat parameters with Adam's moments, the gradient
    and its concatenation, the masks; a batch's (variants, h, batch) activations; an
    evaluation batch of 8192; the float64 copies the metrics take."""
    m, classes, n_train, width_key = _task(config, task)
    n_variants, _ = _variants(config, structure)
    per_net = 2 * m * m + (classes + 1) * m + classes
    params = n_variants * per_net * FLOAT32
    batch = config["align"]["finetuning"]["batch_size"]
    variant_keys = ("align.sparsities", "align.methods", width_key)
    held = [
        _dataset_term(config, task),
        Term(
            f"{n_variants} stacked nets, Adam state and masks",
            8 * params + 2 * n_variants * m * m,
            variant_keys,
        ),
    ]
    training = [
        Term(
            f"a batch of {batch} through {n_variants} nets",
            6 * n_variants * m * (batch + m) * FLOAT32,
            (*variant_keys, "align.finetuning.batch_size"),
        )
    ]
    rows = min(ALIGN_EVAL_ROWS, n_train)
    evaluating = [
        Term(
            f"an evaluation batch of {rows} through {n_variants} nets and float64 copies",
            3 * n_variants * m * rows * FLOAT32 + 3 * n_variants * per_net * FLOAT64,
            variant_keys,
        )
    ]
    return peak("finetune_align_nets", f"task {task} ({structure})", held, training, evaluating)
