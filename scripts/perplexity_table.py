"""Table 1: perplexity of every condition."""

from prunescope.analysis import perplexity_table
from prunescope.io import read_json, write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    table = perplexity_table(read_json(path) for path in snakemake.input)
    write_csv(snakemake.output[0], table)
    log.info("\n%s", table.to_string())
