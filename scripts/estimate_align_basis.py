"""Study ALIGN: a feature basis estimated from one net's embedded training inputs alone (an
SAE's dictionary or FastICA's mixing matrix), and how well it recovers the net's C0."""

from prunescope.align.jobs import estimate_align_basis
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    w = snakemake.wildcards
    estimate_align_basis(
        snakemake.input.net,
        snakemake.input.data,
        snakemake.output.basis,
        snakemake.output.recovery,
        estimator=p.estimator,
        settings=p.settings,
        seed=p.seed,
        task=w.task,
        trial=int(w.trial),
    )
