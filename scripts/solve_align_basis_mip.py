"""Study ALIGN: the MIP at one sparsity with an estimated feature basis in place of C0, every
neuron solved to optimality or to the time or node limit, as the oracle's."""

from prunescope.align.jobs import solve_align_basis_mip
from prunescope.align.mip import MipSettings
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    w = snakemake.wildcards
    solve_align_basis_mip(
        snakemake.input.net,
        snakemake.input.basis,
        snakemake.output[0],
        structure=p.structure,
        sparsity=p.sparsity,
        settings=MipSettings(**{**p.mip, "threads": snakemake.threads}),
        estimator=p.estimator,
        task=w.task,
        trial=int(w.trial),
    )
