"""RQ2/RQ4 under activation-level survival: survival at every threshold, Table 3's layout
and its per-quintile figure."""

from prunescope.analysis import activation_survival_tables, read_keyed_tables, write_survival_table
from prunescope.figures import quintile_lines, save_figure
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    survival, table3, quintiles = activation_survival_tables(
        read_keyed_tables(p.conditions, snakemake.input),
        p.taus,
        p.primary_tau,
        n_boot=p.bootstrap,
        seed=p.seed,
    )
    write_survival_table(snakemake.output.survival, survival)
    write_survival_table(snakemake.output.table, table3)
    write_survival_table(snakemake.output.quintiles, quintiles)
    log.info("activation-level Table 3 (tau %.2f):\n%s", p.primary_tau, table3.to_string())
    label = f"activation survival (correlation ≥ {p.primary_tau:g})"
    save_figure(quintile_lines(table3, p.primary_tau, ylabel=label), snakemake.output.figure)
