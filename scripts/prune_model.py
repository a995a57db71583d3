"""Prune the dense model with one method at one sparsity and save the checkpoint."""

from prunescope.checkpoints import save_pruned
from prunescope.corpus import windows_from_jsonl
from prunescope.io import atomic_path
from prunescope.models import load_causal_lm
from prunescope.pruning import feature_arguments, prune_model
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    p = snakemake.params
    options = dict(p.options)
    model, tokenizer = load_causal_lm(snakemake.input.model, p.dtype, p.device)
    calibration = options.pop("calibration", None)
    calibration_ids, batch_size = None, 8
    if calibration is not None:
        calibration_ids = windows_from_jsonl(
            tokenizer, snakemake.input.calib, calibration["context"], calibration["n_tokens"]
        )
        batch_size = calibration["batch_size"]
        log.info("calibration windows: %s", tuple(calibration_ids.shape))
    nm = options.pop("nm")
    options.update(feature_arguments(options.pop("feature", None), snakemake.input.bases))
    report = prune_model(
        model,
        options.pop("method"),
        p.sparsity,
        calibration_ids,
        nm=tuple(nm) if nm else None,
        batch_size=batch_size,
        **options,
    )
    report["calibration"] = calibration
    log.info("achieved overall sparsity %.6f", report["overall_sparsity"])
    with atomic_path(snakemake.output[0]) as tmp:
        save_pruned(model.to("cpu"), tokenizer, report, tmp)
