"""Study ALIGN's workflow jobs, one function per rule of workflow/rules/align*.smk, named
after it: each reads the rule's input files, runs its stage from :mod:`experiment` and
writes its outputs (the two tables stacked from one file per trial share
:func:`stack_trial_tables`). The scripts in scripts/ only hand over Snakemake's paths,
params and wildcards.

The figures are drawn by :func:`figures.plot_figure` and :func:`pictures.plot_picture`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from prunescope.align.basis import embedded_inputs, estimate_basis, recovery, solvable_basis
from prunescope.align.data import dataset_from_options, load_dataset, save_dataset
from prunescope.align.experiment import (
    code_maps,
    finetune_variants,
    load_basis,
    load_mip_solution,
    load_variant_nets,
    magnitude_sweep,
    net_metrics,
    persistence_frame,
    prune_variants,
    save_basis,
    save_mip_solution,
    save_variant_nets,
    train_dense_net,
)
from prunescope.align.hessian import hessian_sample, w1_hessian
from prunescope.align.mip import MipSettings, solutions_frame, solve_layer
from prunescope.align.net import load_nets, save_nets
from prunescope.align.prune import damped_inverse
from prunescope.align.results import (
    accuracy_summary,
    accuracy_table,
    basis_comparison,
    mip_neuron_table,
    mip_seconds,
    mip_summary,
    recovery_summary,
)
from prunescope.align.structures import STRUCTURES, keep_count
from prunescope.artifacts import read_npy
from prunescope.io import atomic_path, read_json, write_csv, write_json
from prunescope.models import pick_device

log = logging.getLogger("prunescope")

# what identifies a variant's row in the pruned and fine-tuned tables
VARIANT_COLUMNS = ["variant", "method", "sparsity", "task", "structure", "trial"]


def make_align_dataset(options: dict, path) -> None:
    """One trial's dataset (a fresh read-once 4-DNF, or the fixed Digits split)."""
    data = dataset_from_options(options)
    save_dataset(path, data)
    log.info(
        "%d train / %d test samples, %d features, positive rate %.3f",
        len(data.y_train),
        len(data.y_test),
        data.x_train.shape[1],
        data.y_train.mean(),
    )


def train_align_net(
    data, net_path, history_path, *, training: dict, seed: int, task: str, trial: int
) -> None:
    """Train the dense net (learnable C0) on dataset file ``data``; its history records the
    metrics and codes of every epoch (Fig. A1)."""
    nets, history = train_dense_net(load_dataset(data), **training, seed=seed)
    save_nets(net_path, nets, {"seed": str(seed)})
    write_csv(history_path, history.assign(task=task, trial=trial))


def estimate_align_hessian(
    net, data, hessian_path, inverse_path, *, fraction: float, seed: int, damping: float, device
) -> None:
    """Hessian of the training loss with respect to W1 (OBD, OBS, FLO) on a ``fraction`` of
    the training samples, and its damped inverse."""
    dataset = load_dataset(data)
    weights = load_nets(net).variant(0)
    rows = hessian_sample(len(dataset.x_train), fraction, seed)
    device = str(pick_device(device))
    hessian = w1_hessian(**weights, x=dataset.x_train[rows], device=device)
    log.info("Hessian %s from %d samples on %s", hessian.shape, len(rows), device)
    inverse = damped_inverse(hessian, damping)
    for path, array in ((hessian_path, hessian), (inverse_path, inverse)):
        with atomic_path(path) as tmp, open(tmp, "wb") as stream:
            np.save(stream, array)


def estimate_align_basis(
    net, data, basis_path, recovery_path, *, estimator: str, settings: dict, seed: int, task, trial
) -> None:
    """A feature basis that ``estimator`` finds in the embedded training inputs x' = C0·x (C0
    serves only to compute x'), and how well its columns recover those of C0."""
    C0 = load_nets(net).variant(0)["C0"]
    inputs = embedded_inputs(load_dataset(data).x_train, C0)
    basis = estimate_basis(estimator, inputs, C0.shape[1], settings, seed)
    save_basis(basis_path, basis)
    score = recovery(C0, basis)
    write_json(recovery_path, {"task": task, "trial": trial, "estimator": estimator, **score})
    log.info(
        "%s basis %s: best |cosine| with C0's columns %.3f on average, %.3f at worst",
        estimator,
        basis.shape,
        score["mean_best_cosine"],
        score["min_best_cosine"],
    )


def solve_align_mip(
    net, path, *, structure: str, sparsity: float, settings: MipSettings, task: str, trial: int
) -> None:
    """The MIP oracle's W1 at one sparsity, every neuron solved to optimality or to the time
    or node limit (enumeration, branch and bound, or SCIP as ``settings.solver`` says)."""
    weights = load_nets(net).variant(0)
    labels = {"task": task, "structure": structure, "trial": trial, "sparsity": sparsity}
    _solve_and_save(weights["W1"], weights["C0"], path, settings, labels)


def solve_align_basis_mip(
    net, basis, path, *, structure, sparsity, settings: MipSettings, estimator, task, trial
) -> None:
    """The same MIP with the basis that ``estimator`` found in place of C0 (directions it
    leaves unspanned get a small weight: :func:`basis.solvable_basis`)."""
    W1 = load_nets(net).variant(0)["W1"]
    labels = {"task": task, "structure": structure, "trial": trial, "sparsity": sparsity}
    labels["basis"] = estimator
    _solve_and_save(W1, solvable_basis(load_basis(basis)), path, settings, labels)


def _solve_and_save(W1, basis, path, settings: MipSettings, labels: dict) -> None:
    """Every row of W1 solved against ``basis`` at the labels' structure and sparsity."""
    keep = keep_count(W1.shape[1], labels["sparsity"])
    block = STRUCTURES[labels["structure"]]
    mask, refitted, solutions = solve_layer(W1, basis, keep, block, settings=settings)
    frame = solutions_frame(solutions)
    save_mip_solution(path, mask, refitted, frame, **labels)
    proven = frame["status"].isin(["optimal", "enumerated"]).sum()
    log.info(
        "%d of %d neurons proven optimal; max gap %.2e; %.1f s in all",
        proven,
        len(frame),
        frame["gap"].max(),
        frame["seconds"].sum(),
    )


def prune_align_nets(
    net,
    data,
    hessian,
    hessian_inverse,
    mip,
    basis_mip,
    nets_path,
    metrics_path,
    *,
    variants: list,
    structure: str,
    task: str,
    trial: int,
) -> None:
    """Every (method, sparsity) of ``variants`` pruned from one dense net, measured before
    fine-tuning; ``mip`` lists the MIP oracle's solutions of its sparsities, ``basis_mip``
    those with estimated bases."""
    dense = load_nets(net).variant(0)
    dataset = load_dataset(data)
    solutions = [load_mip_solution(path) for path in mip]
    by_sparsity = {float(s["label_sparsity"]): s for s in solutions}
    by_basis: dict[str, dict] = {}
    for solution in map(load_mip_solution, basis_mip):
        basis = by_basis.setdefault(str(solution["label_basis"]), {})
        basis[float(solution["label_sparsity"])] = solution
    variant_list = [(method, float(s)) for method, s in variants]
    nets, masks = prune_variants(
        dense,
        variant_list,
        structure=structure,
        hessian=read_npy(hessian, "ALIGN Hessian"),
        hessian_inverse=read_npy(hessian_inverse, "ALIGN Hessian inverse"),
        mip_solutions=by_sparsity,
        basis_solutions=by_basis,
    )
    save_variant_nets(nets_path, nets, masks)
    metrics = net_metrics(nets, dataset, dense)
    keys = {"task": task, "structure": structure, "trial": trial}
    metrics.insert(0, "variant", range(len(variant_list)))
    metrics.insert(1, "method", [m for m, _ in variant_list])
    metrics.insert(2, "sparsity", [s for _, s in variant_list])
    write_csv(metrics_path, metrics.assign(**keys))


def finetune_align_nets(
    nets, pruned, data, dense, nets_path, metrics_path, *, finetuning: dict, seed: int
) -> None:
    """Fine-tune every pruned variant with its mask fixed; track code persistence."""
    dataset = load_dataset(data)
    dense_weights = load_nets(dense).variant(0)
    variant_nets, masks = load_variant_nets(nets)
    pruned_table = pd.read_csv(pruned)
    clauses = dataset.clauses
    before = code_maps(variant_nets, clauses) if clauses is not None else None
    variant_nets = finetune_variants(variant_nets, masks, dataset, **finetuning, seed=seed)
    save_variant_nets(nets_path, variant_nets, masks)
    metrics = net_metrics(variant_nets, dataset, dense_weights)
    if before is not None:
        persistence = persistence_frame(before, code_maps(variant_nets, clauses))
        metrics = pd.concat([metrics, persistence], axis=1)
    write_csv(metrics_path, pd.concat([pruned_table[VARIANT_COLUMNS], metrics], axis=1))


def sweep_align_magnitude(net, data, path, *, sparsities, task: str, trial: int) -> None:
    """Loss and codes of the dense net under per-row magnitude pruning (Fig. 2)."""
    dense = load_nets(net).variant(0)
    dataset = load_dataset(data)
    sweep = magnitude_sweep(dense, dataset, sorted(sparsities))
    write_csv(path, sweep.assign(task=task, trial=trial))


def align_accuracy_table(pruned, finetuned, table_path, summary_path) -> None:
    """Accuracy, loss, divergence and codes of every variant, per trial and summarised, from
    the ``pruned`` and ``finetuned`` tables of every trial."""
    table = accuracy_table(
        [pd.read_csv(path) for path in pruned],
        [pd.read_csv(path) for path in finetuned],
    )
    write_csv(table_path, table)
    write_csv(summary_path, accuracy_summary(table))


def align_basis_table(accuracy, recoveries, table_path, recovery_path) -> None:
    """MIP and FLO with estimated bases beside the oracle's, OBS and MP (from the per-trial
    ``accuracy`` table), and how well each basis recovers C0 (from its ``recoveries``)."""
    recovery = pd.DataFrame([read_json(path, "basis recovery") for path in recoveries])
    recovery = recovery.drop(columns="best_cosine")
    write_csv(table_path, basis_comparison(pd.read_csv(accuracy), recovery))
    write_csv(recovery_path, recovery_summary(recovery))


def align_mip_table(solutions, table_path, seconds_path) -> None:
    """The MIP oracle's solves (neurons proven optimal, gaps, nodes) and, apart from that
    table, their times."""
    neurons = mip_neuron_table([load_mip_solution(path) for path in solutions])
    write_csv(table_path, mip_summary(neurons))
    write_csv(seconds_path, mip_seconds(neurons))


def stack_trial_tables(paths, path) -> None:
    """The rows of every trial's table, in the order of ``paths``, in one table."""
    write_csv(path, pd.concat(map(pd.read_csv, paths), ignore_index=True))
