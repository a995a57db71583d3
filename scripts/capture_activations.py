"""Cache fp32 residual-stream activations of one condition at one layer (HDF5): the block's
output, or the stream entering its attention or MLP norm (a feature site, dense only)."""

from prunescope.activations import SETTINGS_ATTR, capture_activations, settings_record
from prunescope.corpus import windows_from_jsonl
from prunescope.models import check_layer_index, load_causal_lm
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    p = snakemake.params
    cfg = p.settings["activations"]
    w = snakemake.wildcards
    layer, cond = int(w.layer), w.get("cond", "dense")
    model, tokenizer = load_causal_lm(snakemake.input.model, p.settings["dtype"], p.device)
    site = w.get("site", "resid_post")
    key = f"models.{w.model}.layers" if site == "resid_post" else "pruning.feature.blocks"
    check_layer_index(model, layer, key=key)
    splits = {
        name: windows_from_jsonl(tokenizer, snakemake.input[name], cfg["context"], n_tokens)
        for name, n_tokens in (("train", cfg["train_tokens"]), ("eval", cfg["eval_tokens"]))
    }
    skip = 1 if cfg["skip_bos"] and tokenizer.bos_token_id is not None else 0
    summary = capture_activations(
        model,
        layer,
        splits,
        snakemake.output[0],
        provenance={
            "model": w.model,
            "condition": cond,
            "corpus": p.settings["corpus"],
            "model_path": snakemake.input.model,
            SETTINGS_ATTR: settings_record(p.settings),
        },
        batch_size=cfg["batch_size"],
        stats_samples=cfg["stats_samples"],
        skip_positions=skip,
        site=site,
    )
    log.info("cached %s", summary)
