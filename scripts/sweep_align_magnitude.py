"""Study ALIGN, Fig. 2: loss and codes of the dense net under per-row magnitude pruning."""

from prunescope.align.jobs import sweep_align_magnitude
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    w = snakemake.wildcards
    sweep_align_magnitude(
        snakemake.input.net,
        snakemake.input.data,
        snakemake.output[0],
        sparsities=snakemake.params.sparsities,
        task=w.task,
        trial=int(w.trial),
    )
