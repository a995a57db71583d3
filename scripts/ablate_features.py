"""RQ5: KL of single-feature ablations for the robust and fragile features of one SAE."""

from prunescope.io import write_json
from prunescope.robust_fragile import ablate_robust_and_fragile
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu):
    i, w, p = snakemake.input, snakemake.wildcards, snakemake.params
    record = ablate_robust_and_fragile(
        i.model,
        i.sae,
        i.prompts,
        i.ranking,
        i.sae_metrics,
        layer=int(w.layer),
        side=w.side,
        settings=p.ablation,
        dtype=p.dtype,
        device=p.device,
    )
    keys = {"model": w.model, "layer": int(w.layer), "condition": w.cond, "side": w.side}
    write_json(snakemake.output[0], keys | record)
