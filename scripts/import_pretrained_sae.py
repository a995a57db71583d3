"""An SAE trained elsewhere (local folder or hub), checked against the model's residual
width and copied into the workflow with a record of where it came from."""

from prunescope.models import residual_width
from prunescope.pretrained import import_pretrained_sae
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    record = import_pretrained_sae(
        p.source,
        snakemake.output[0],
        label=p.label,
        d_model=residual_width(snakemake.input.model),
        key=p.key,
    )
    log.info("%s", record)
