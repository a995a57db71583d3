"""Logistic fit: P(feature survives) from log firing rate and sparsity, per model, method and
survival definition (activation, paired_init, cross_seed)."""

import pandas as pd

from prunescope.analysis import logistic_fits, reference_firing_rates, write_survival_table
from prunescope.io import atomic_path
from prunescope.matching import load_matches
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    activation = {
        (model, int(layer), cond): pd.read_csv(path)
        for (model, layer, cond), path in zip(p.conditions, snakemake.input.activation, strict=True)
    }
    table, summaries = logistic_fits(
        reference_firing_rates(snakemake.input.dense),
        map(load_matches, snakemake.input.matches),
        activation,
        p.taus,
        p.correlation_taus,
        p.seed,
    )
    write_survival_table(snakemake.output.table, table)
    with atomic_path(snakemake.output.summaries) as tmp:
        tmp.write_text("\n".join(summaries))
    fits = table.drop_duplicates(["model", "layer", "method", "definition", "tau"])
    for _, row in fits.iterrows():
        log.info(
            "%s L%s %s %s tau=%g: AUC %.3f accuracy %.3f %s",
            *row[["model", "layer", "method", "definition", "tau", "auc", "accuracy", "note"]],
        )
