"""Table 1 (each condition's perplexity) and Table B.1 (each SAE's reconstruction quality,
averaged over seeds)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from prunescope.analysis.definitions import condition_columns
from prunescope.io import read_json


def perplexity_table(records: Iterable[dict]) -> pd.DataFrame:
    """Table 1: perplexity per model, method and sparsity; dense is every method's 0 %."""
    rows = []
    for r in records:
        rows.append(
            {
                "model": r["model"],
                **condition_columns(r["condition"]),
                "perplexity": r["perplexity"],
                "n_tokens": r["n_tokens_scored"],
            }
        )
    return pd.DataFrame(rows).sort_values(["model", "method", "sparsity"], ignore_index=True)


def sae_quality_table(records: Iterable[dict]) -> pd.DataFrame:
    """Table B.1: SAE FVU, L0 and alive features averaged over seeds, with n."""
    frame = pd.DataFrame(list(records))
    keys = ["model", "layer", "condition", "method", "sparsity"]
    out = (
        frame.groupby(keys, sort=False)
        .agg(
            fvu=("fvu", "mean"),
            fvu_std=("fvu", "std"),
            l0=("l0", "mean"),
            alive=("alive", "mean"),
            d_sae=("d_sae", "first"),
            n=("seed", "count"),
        )
        .reset_index()
    )
    return out.sort_values(["model", "layer", "method", "sparsity"], ignore_index=True)


def sae_quality_records(metrics_paths: Iterable[str], cfg_paths: Iterable[str]) -> list[dict]:
    """One record per SAE for ``sae_quality_table``: its model, layer, condition and seed
    (from ``cfg.json``) and its FVU, L0, alive features and width (from ``metrics.json``)."""
    records = []
    for metrics_path, cfg_path in zip(metrics_paths, cfg_paths, strict=True):
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
    return records
