"""Distortions beside perplexity and survival per condition, and how well each ranks them."""

from prunescope.feature_pruning.jobs import feature_pruning_tables
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    feature_pruning_tables(
        dict(zip(map(tuple, p.conditions), snakemake.input.distortions, strict=True)),
        snakemake.input.perplexity,
        snakemake.input.activation_survival,
        snakemake.input.decoder_survival,
        snakemake.input.activation_quintiles,
        snakemake.output.table,
        snakemake.output.ranks,
        snakemake.output.figure,
        sae_label=p.sae_label,
        activation_tau=p.activation_tau,
        decoder_tau=p.decoder_tau,
    )
