"""RQ4, Table 3 and Figures 4-5: survival of dense features by firing-rate quintile, per
definition (paired_init, cross_seed) beside the dense seed floor."""

from itertools import chain

from prunescope.analysis import decoder_quintile_tables, dense_firing_rates, write_survival_table
from prunescope.figures import quintile_by_method, quintile_lines, save_figure
from prunescope.matching import load_matches
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    firing = dense_firing_rates(snakemake.input.dense)
    matches = map(load_matches, chain(snakemake.input.matches, snakemake.input.floor))
    table3, long = decoder_quintile_tables(
        matches, firing, p.taus, p.primary_tau, n_boot=p.bootstrap, seed=p.seed
    )
    write_survival_table(snakemake.output.table, table3)
    write_survival_table(snakemake.output.quintiles, long)
    log.info("Table 3 (tau %.2f):\n%s", p.primary_tau, table3.to_string())
    for _, row in table3[table3["note"] != ""].iterrows():
        log.info("%s %s %s: %s", row["model"], row["condition"], row["definition"], row["note"])
    save_figure(quintile_lines(table3, p.primary_tau), snakemake.output.figure)
    save_figure(quintile_by_method(long, p.primary_tau), snakemake.output.by_method)
