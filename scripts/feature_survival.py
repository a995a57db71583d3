"""RQ2: dense vs pruned SAE match rates per definition (paired_init, cross_seed), beside the
dense seed-to-seed floor (Figure 2)."""

from prunescope.analysis import feature_survival_table, write_survival_table
from prunescope.figures import save_figure, survival_lines
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    table = feature_survival_table(snakemake.input.matches, snakemake.input.stability)
    write_survival_table(snakemake.output.table, table)
    save_figure(survival_lines(table, snakemake.params.tau), snakemake.output.figure)
