"""Activation-level survival: one fixed dictionary (the dense reference SAE, or an SAE
trained elsewhere) on the dense and on one pruned condition's eval activations of the same
tokens, feature by feature, beside the same comparison with a random perturbation as large
as pruning's (the matched-noise control). Each feature's strongest activations on either
side, and its activations on their contexts, are kept for the feature browser."""

from prunescope.browser import save_top_activations
from prunescope.browser.jobs import survival_with_top_activations
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    i, p = snakemake.input, snakemake.params
    table, sides, contexts, record = survival_with_top_activations(
        i.dense,
        i.pruned,
        i.sae,
        dense_capture=p.dense_capture,
        capture=p.capture,
        control_seed=p.noise_seed,
        device=p.device,
        **p.browser,
    )
    write_csv(snakemake.output.table, table)
    save_top_activations(snakemake.output.top, sides, record, contexts)
    alive = table["dense_rate"] > 0
    log.info(
        "%d rows; %d alive dense features; median correlation %.3f, under matched noise %.3f",
        table.attrs["n_rows"],
        int(alive.sum()),
        float(table.loc[alive, "correlation"].median()),
        float(table.loc[alive, "control_correlation"].median()),
    )
