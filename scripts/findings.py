"""The findings page: per model, every measure of every condition beside its control, and
the sentences those numbers support, computed from the run's tables; Study ALIGN's
accuracy and weight pictures after them."""

from pathlib import Path

from prunescope.browser.jobs import findings_page
from prunescope.io import atomic_path
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads) as log:
    page = findings_page(
        dict(snakemake.input.items()),
        tau=snakemake.params.tau,
        correlation_tau=snakemake.params.correlation_tau,
        reference_sae=snakemake.params.reference_sae,
    )
    with atomic_path(snakemake.output[0]) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    log.info("wrote %s", snakemake.output[0])
