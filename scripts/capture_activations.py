"""Cache fp32 residual-stream activations of one condition at one layer (HDF5)."""

from prunescope.activations import SETTINGS_ATTR, capture_activations, settings_record
from prunescope.corpus import windows_from_jsonl
from prunescope.models import check_layer_index, load_causal_lm
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    p = snakemake.params
    cfg = p.settings["activations"]
    layer = int(snakemake.wildcards.layer)
    model, tokenizer = load_causal_lm(snakemake.input.model, p.settings["dtype"], p.device)
    check_layer_index(model, layer, key=f"models.{snakemake.wildcards.model}.layers")
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
            "model": snakemake.wildcards.model,
            "condition": snakemake.wildcards.cond,
            "corpus": p.settings["corpus"],
            "model_path": snakemake.input.model,
            SETTINGS_ATTR: settings_record(p.settings),
        },
        batch_size=cfg["batch_size"],
        stats_samples=cfg["stats_samples"],
        skip_positions=skip,
    )
    log.info("cached %s", summary)
