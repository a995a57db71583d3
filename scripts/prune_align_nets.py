"""Study ALIGN: every method x sparsity pruned from one dense net, measured before fine-tuning."""

from prunescope.align.jobs import prune_align_nets
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    w = snakemake.wildcards
    i = snakemake.input
    prune_align_nets(
        i.net,
        i.data,
        i.hessian,
        i.hessian_inverse,
        i.mip,
        i.basis_mip,
        snakemake.output.nets,
        snakemake.output.metrics,
        variants=p.variants,
        structure=p.structure,
        task=w.task,
        trial=int(w.trial),
    )
