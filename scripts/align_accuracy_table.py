"""Study ALIGN: accuracy, loss, divergence and codes of every variant, per trial and summarised."""

from prunescope.align.jobs import align_accuracy_table
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    align_accuracy_table(
        snakemake.input.pruned,
        snakemake.input.finetuned,
        snakemake.output.table,
        snakemake.output.summary,
    )
