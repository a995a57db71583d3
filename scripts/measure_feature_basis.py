"""The basis SAE's alive features as the block's projections see them, with their energies."""

from pathlib import Path

from prunescope.feature_pruning.jobs import measure_basis
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu):
    p = snakemake.params
    measure_basis(
        snakemake.input.model,
        Path(snakemake.input.sae).parent,
        snakemake.input.activations,
        snakemake.output[0],
        block=int(snakemake.wildcards.layer),
        site=snakemake.wildcards.site,
        capture=p.capture,
        dtype=p.dtype,
        device=p.device,
    )
