"""Train one TopK SAE seed on a cached activation file (a layer's, or a feature site's)."""

from pathlib import Path

from prunescope.models import pick_device
from prunescope.runlog import rule_logging
from prunescope.sae import SAEConfig, train_sae

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    p = snakemake.params
    cfg = SAEConfig(**p.sae, seed=p.seed)
    w = snakemake.wildcards
    metrics = train_sae(
        snakemake.input[0],
        cfg,
        pick_device(p.device),
        Path(snakemake.output.metrics).parent,
        provenance={
            "model": w.model,
            "condition": w.get("cond", "dense"),
            "layer": int(w.layer),
            "site": w.get("site", "resid_post"),
        },
        capture_settings=p.capture,
    )
    log.info("FVU %.4f, L0 %.2f, alive %d", metrics["fvu"], metrics["l0"], metrics["alive"])
