"""Table B.1: SAE reconstruction quality averaged over seeds."""

from prunescope.analysis import condition_columns, sae_quality_table
from prunescope.io import atomic_path, read_json
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    records = []
    for metrics_path, cfg_path in zip(snakemake.input.metrics, snakemake.input.cfgs, strict=True):
        cfg, metrics = read_json(cfg_path), read_json(metrics_path)
        prov = cfg["provenance"]
        records.append(
            {
                "model": prov["model"],
                "layer": int(prov["layer"]),
                **condition_columns(prov["condition"]),
                "seed": cfg["seed"],
                **{k: metrics[k] for k in ("fvu", "l0", "alive", "d_sae")},
            }
        )
    table = sae_quality_table(records)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, index=False)
    log.info("\n%s", table.to_string())
