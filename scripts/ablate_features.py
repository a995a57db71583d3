"""RQ5: KL of single-feature ablations for the robust and fragile features of one SAE."""

from pathlib import Path

import numpy as np
import pandas as pd

from prunescope.ablation import (
    ablation_kl,
    activation_ranking,
    kl_when_fired,
    robust_and_fragile,
    summarise_ablation,
)
from prunescope.corpus import windows_from_jsonl
from prunescope.io import read_json, write_json
from prunescope.matching import load_matches
from prunescope.models import load_causal_lm
from prunescope.runlog import rule_logging
from prunescope.sae import load_sae

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    w, p = snakemake.wildcards, snakemake.params
    cfg = p.ablation
    sae_dir = Path(snakemake.input.sae).parent
    if cfg["selection"] == "activation":
        score, alive = activation_ranking(pd.read_csv(snakemake.input.ranking), w.side)
    else:
        # dense features by their best cosine in the pruned SAE of the same seed, pruned
        # features by their best cosine in the dense SAE
        match = load_matches(snakemake.input.ranking)
        score = match.a_best_cos if w.side == "dense" else match.b_best_cos
        alive = np.asarray(read_json(snakemake.input.sae_metrics)["firing_rate"]) > 0
    chosen = robust_and_fragile(score, alive, cfg["n_features"])
    if chosen.get("note"):
        log.info("%s", chosen["note"])
    model, tokenizer = load_causal_lm(snakemake.input.model, p.dtype, p.device)
    prompts = windows_from_jsonl(
        tokenizer, snakemake.input.prompts, cfg["context"], cfg["n_prompts"] * cfg["context"]
    )[: cfg["n_prompts"]]
    sae = load_sae(sae_dir)
    features = np.concatenate([chosen["robust"], chosen["fragile"]])
    result = ablation_kl(
        model,
        sae,
        int(w.layer),
        prompts,
        features,
        mode=cfg["mode"],
        feature_batch_size=cfg["feature_batch_size"],
        prompt_batch_size=cfg["prompt_batch_size"],
    )
    kl = np.asarray(result["kl"])
    n = len(chosen["robust"])
    summary = summarise_ablation(kl[:n], kl[n:])
    per_prompt, fired = result["kl_per_prompt"], result["fired"]
    summary |= kl_when_fired(per_prompt[:n], fired[:n], "robust")
    summary |= kl_when_fired(per_prompt[n:], fired[n:], "fragile")
    out = {
        "model": w.model,
        "layer": int(w.layer),
        "condition": w.cond,
        "side": w.side,
        "mode": cfg["mode"],
        "selection": cfg["selection"],
        "n_prompts": result["n_prompts"],
        "context": result["context"],
        "selection_note": chosen.get("note", ""),
        "reconstruction_baseline_kl": result["reconstruction_baseline_kl"],
        **summary,
        "robust_features": np.asarray(chosen["robust"]).tolist(),
        "fragile_features": np.asarray(chosen["fragile"]).tolist(),
        "robust_kl_per_feature": kl[:n].tolist(),
        "fragile_kl_per_feature": kl[n:].tolist(),
    }
    log.info(
        "robust %.5f fragile %.5f delta %.2f%%",
        summary["robust_kl"],
        summary["fragile_kl"],
        summary["delta_pct"],
    )
    write_json(snakemake.output[0], out)
