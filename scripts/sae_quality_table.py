"""Table B.1: SAE reconstruction quality averaged over seeds."""

from prunescope.analysis import sae_quality_records, sae_quality_table
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    i = snakemake.input
    table = sae_quality_table(sae_quality_records(i.metrics, i.cfgs))
    write_csv(snakemake.output[0], table)
    log.info("\n%s", table.to_string())
