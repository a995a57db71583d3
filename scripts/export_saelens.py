"""One SAE trained here as an SAELens folder that runs on raw activations."""

from pathlib import Path

from prunescope.export import export_saelens
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    out = export_saelens(
        Path(snakemake.input.weights).parent, snakemake.output[0], **snakemake.params.export
    )
    log.info("wrote %s (SAELens topk, normalisation folded into the weights)", out)
