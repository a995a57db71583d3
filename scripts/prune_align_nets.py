"""Study ALIGN: every method x sparsity pruned from one dense net, measured before fine-tuning."""

from prunescope.align.data import load_dataset
from prunescope.align.experiment import (
    load_mip_solution,
    net_metrics,
    prune_variants,
    save_variant_nets,
)
from prunescope.align.net import load_nets
from prunescope.artifacts import read_npy
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    w = snakemake.wildcards
    dense = load_nets(snakemake.input.net).variant(0)
    data = load_dataset(snakemake.input.data)
    solutions = [load_mip_solution(path) for path in snakemake.input.mip]
    mip = {float(s["label_sparsity"]): s for s in solutions}
    variant_list = [(method, float(s)) for method, s in p.variants]
    nets, masks = prune_variants(
        dense,
        variant_list,
        structure=p.structure,
        hessian=read_npy(snakemake.input.hessian, "ALIGN Hessian"),
        hessian_inverse=read_npy(snakemake.input.hessian_inverse, "ALIGN Hessian inverse"),
        mip_solutions=mip,
    )
    save_variant_nets(snakemake.output.nets, nets, masks)
    metrics = net_metrics(nets, data, dense)
    keys = {"task": w.task, "structure": p.structure, "trial": int(w.trial)}
    metrics.insert(0, "variant", range(len(variant_list)))
    metrics.insert(1, "method", [m for m, _ in variant_list])
    metrics.insert(2, "sparsity", [s for _, s in variant_list])
    write_csv(snakemake.output.metrics, metrics.assign(**keys))
