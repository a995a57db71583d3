"""Study ALIGN: train the dense net (learnable C0) and record codes every epoch (Fig. A1)."""

from prunescope.align.jobs import train_align_net
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    w = snakemake.wildcards
    train_align_net(
        snakemake.input[0],
        snakemake.output.net,
        snakemake.output.history,
        training=p.training,
        seed=p.seed,
        task=w.task,
        trial=int(w.trial),
    )
