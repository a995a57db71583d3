"""Study ALIGN: fine-tune every pruned variant with its mask fixed; track code persistence."""

from prunescope.align.jobs import finetune_align_nets
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    i = snakemake.input
    finetune_align_nets(
        i.nets,
        i.pruned,
        i.data,
        i.dense,
        snakemake.output.nets,
        snakemake.output.metrics,
        finetuning=snakemake.params.finetuning,
        seed=snakemake.params.seed,
    )
