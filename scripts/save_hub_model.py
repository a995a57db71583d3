"""Freeze a hub (or local) causal LM into results/ so every condition starts from the same files."""

from prunescope.checkpoints import save_pretrained_copy
from prunescope.io import atomic_path
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    # Named from the wildcard, not a param: a new param would rerun every saved hub model.
    key = f"models.{snakemake.wildcards.model}.name"
    with atomic_path(snakemake.output[0]) as tmp:
        save_pretrained_copy(p.name, tmp, revision=p.revision, dtype=p.dtype, key=key)
    log.info("saved %s (revision %s) as %s", p.name, p.revision, p.dtype)
