"""Study ALIGN, Fig. 2: the magnitude sweeps of every task and trial in one table."""

import pandas as pd

from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    write_csv(snakemake.output[0], pd.concat(map(pd.read_csv, snakemake.input), ignore_index=True))
