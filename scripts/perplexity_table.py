"""Table 1: perplexity of every condition."""

from prunescope.analysis import perplexity_table
from prunescope.io import atomic_path, read_json
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    table = perplexity_table(read_json(path) for path in snakemake.input)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, index=False)
    log.info("\n%s", table.to_string())
