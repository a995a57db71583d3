"""Study ALIGN: one trial's dataset (a fresh read-once 4-DNF, or the fixed Digits split)."""

from prunescope.align.jobs import make_align_dataset
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    make_align_dataset(snakemake.params.options, snakemake.output[0])
