"""The feature browser page of one model and layer: sampled features of the dense reference
SAE per firing-rate quintile, survived beside destroyed, each with its strongest contexts
shaded by its activation in the dense and in the pruned model."""

from pathlib import Path

from prunescope.browser.jobs import feature_pages
from prunescope.io import atomic_path
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads) as log:
    w, p = snakemake.wildcards, snakemake.params
    page = feature_pages(
        w.model,
        int(w.layer),
        snakemake.input.model,
        snakemake.input.eval,
        p.capture,
        p.files,
        tau=p.tau,
        per_quintile=p.per_quintile,
        seed=p.seed,
    )
    with atomic_path(snakemake.output[0]) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    log.info("wrote %s (%.0f kB)", snakemake.output[0], len(page.encode()) / 1e3)
