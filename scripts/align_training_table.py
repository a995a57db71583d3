"""Study ALIGN, Fig. A1: loss, accuracy and code counts of the dense nets, epoch by epoch."""

from prunescope.align.jobs import stack_trial_tables
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    stack_trial_tables(snakemake.input, snakemake.output[0])
