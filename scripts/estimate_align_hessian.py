"""Study ALIGN: Hessian of the training loss with respect to W1 (OBD, OBS, FLO)."""

from prunescope.align.jobs import estimate_align_hessian
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu):
    p = snakemake.params
    estimate_align_hessian(
        snakemake.input.net,
        snakemake.input.data,
        snakemake.output.hessian,
        snakemake.output.inverse,
        fraction=p.fraction,
        seed=p.seed,
        damping=p.damping,
        device=p.device,
    )
