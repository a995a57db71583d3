"""Reverse view: each feature of one condition's SAE (on that condition's eval activations)
and the dense reference SAE feature (on the dense activations of the same tokens) whose
activations correlate with it most. Each feature's strongest activations and their
contexts are kept for the feature browser (a dense feature's best partner)."""

from pathlib import Path

from prunescope.browser import save_top_activations
from prunescope.browser.jobs import reverse_with_top_activations
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    i, p = snakemake.input, snakemake.params
    reverse, sides, contexts, record = reverse_with_top_activations(
        i.dense,
        i.activations,
        Path(i.sae).parent,
        Path(i.dense_sae).parent,
        taus=p.taus,
        dense_capture=p.dense_capture,
        capture=p.capture,
        device=p.device,
        **p.browser,
    )
    write_csv(snakemake.output.table, reverse.table())
    save_top_activations(snakemake.output.top, sides, record, contexts)
    log.info("%d rows\n%s", reverse.n_rows, reverse.counts().to_string())
