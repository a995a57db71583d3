"""Study ALIGN: the MIP oracle's solves (neurons proven optimal, gaps, nodes) and, apart from
that table, their times."""

from prunescope.align.jobs import align_mip_table
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    align_mip_table(snakemake.input, snakemake.output.table, snakemake.output.seconds)
