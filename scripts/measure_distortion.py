"""Weight-space and feature-space distortion of every matrix of one pruned condition."""

from prunescope.feature_pruning.jobs import measure_distortion
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu):
    measure_distortion(
        snakemake.input.dense,
        snakemake.input.pruned,
        snakemake.input.bases,
        snakemake.input.caches,
        snakemake.output[0],
        capture=snakemake.params.capture,
        dtype=snakemake.params.dtype,
        device=snakemake.params.device,
    )
