"""Logistic fit: P(feature survives) from log firing rate and sparsity, per model, method and
survival definition (activation, paired_init, cross_seed)."""

from prunescope.analysis import logistic_fit_table, read_keyed_tables, write_survival_table
from prunescope.io import atomic_path
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    i, p = snakemake.input, snakemake.params
    table, summaries = logistic_fit_table(
        i.dense,
        i.matches,
        read_keyed_tables(p.conditions, i.activation),
        p.taus,
        p.correlation_taus,
        p.seed,
    )
    write_survival_table(snakemake.output.table, table)
    with atomic_path(snakemake.output.summaries) as tmp:
        tmp.write_text(summaries)
