"""Study ALIGN: the MIP oracle's W1 at one sparsity, every neuron solved to optimality or to
the time or node limit (enumeration, branch and bound, or SCIP as ``align.mip.solver`` says)."""

from prunescope.align.jobs import solve_align_mip
from prunescope.align.mip import MipSettings
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    w = snakemake.wildcards
    solve_align_mip(
        snakemake.input[0],
        snakemake.output[0],
        structure=p.structure,
        sparsity=p.sparsity,
        settings=MipSettings(**{**p.mip, "threads": snakemake.threads}),
        task=w.task,
        trial=int(w.trial),
    )
