"""RQ4, Table 3 and Figures 4-5: survival of dense features by firing-rate quintile, per
definition (paired_init, cross_seed) beside the dense seed floor."""

from prunescope.analysis import quintile_survival_tables, write_survival_table
from prunescope.figures import quintile_by_method, quintile_lines, save_figure
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    i, p = snakemake.input, snakemake.params
    table3, long = quintile_survival_tables(
        i.dense, [*i.matches, *i.floor], p.taus, p.primary_tau, n_boot=p.bootstrap, seed=p.seed
    )
    write_survival_table(snakemake.output.table, table3)
    write_survival_table(snakemake.output.quintiles, long)
    save_figure(quintile_lines(table3, p.primary_tau), snakemake.output.figure)
    save_figure(quintile_by_method(long, p.primary_tau), snakemake.output.by_method)
