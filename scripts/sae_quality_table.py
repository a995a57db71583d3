"""Table B.1: SAE reconstruction quality averaged over seeds."""

from pathlib import Path

from prunescope.analysis import condition_columns, sae_quality_table
from prunescope.io import atomic_path, read_json
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    records = []
    for path in snakemake.input:
        cfg = read_json(Path(path).with_name("cfg.json"))
        metrics = read_json(path)
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
