"""The configuration this run used, schema defaults filled in, for the report."""

from prunescope.io import write_yaml
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    write_yaml(snakemake.output[0], snakemake.params.config)
