"""Study ALIGN: accuracy, loss, divergence and codes of every variant, per trial and summarised."""

import pandas as pd

from prunescope.align.results import accuracy_summary, accuracy_table
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    table = accuracy_table(
        [pd.read_csv(path) for path in snakemake.input.pruned],
        [pd.read_csv(path) for path in snakemake.input.finetuned],
    )
    write_csv(snakemake.output.table, table)
    write_csv(snakemake.output.summary, accuracy_summary(table))
