"""RQ1: match rates between every pair of seeds within a condition (Figure 1)."""

from prunescope.analysis import seed_stability_table
from prunescope.figures import save_figure, seed_stability_lines
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    table = seed_stability_table(snakemake.input)
    write_csv(snakemake.output.table, table)
    save_figure(seed_stability_lines(table, snakemake.params.tau), snakemake.output.figure)
