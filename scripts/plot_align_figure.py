"""Study ALIGN: one of the paper's figures (2, 4, 5, 6, A1, A3, A6, A7, A8) from the tables."""

import pandas as pd

from prunescope.align.figures import plot_figure
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    tables = {name: pd.read_csv(path) for name, path in snakemake.input.items()}
    plot_figure(snakemake.params.figure, **tables, path=snakemake.output[0])
