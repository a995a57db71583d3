"""Study ALIGN: MIP and FLO with estimated feature bases beside the oracle's, OBS and MP, and
how well each estimated basis recovers C0."""

from prunescope.align.jobs import align_basis_table
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    align_basis_table(
        snakemake.input.accuracy,
        snakemake.input.recoveries,
        snakemake.output.table,
        snakemake.output.recovery,
    )
