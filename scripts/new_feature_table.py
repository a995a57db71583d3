"""New features: per condition, the share of its SAE's features that no dense-SAE feature
matches in activation, beside the same share for a dense SAE of the same seed."""

from prunescope.analysis import read_keyed_tables
from prunescope.io import write_csv
from prunescope.runlog import rule_logging
from prunescope.survival import new_feature_table

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    table = new_feature_table(read_keyed_tables(p.conditions, snakemake.input), p.taus)
    write_csv(snakemake.output.table, table)
    log.info("\n%s", table.to_string())
