"""Study ALIGN, Fig. 2: the magnitude sweeps of every task and trial in one table."""

from prunescope.align.jobs import stack_trial_tables
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    stack_trial_tables(snakemake.input, snakemake.output[0])
