"""RQ3: the dense SAE applied, unchanged, to one condition's eval activations."""

from pathlib import Path

from prunescope.activations import open_cache
from prunescope.io import write_json
from prunescope.models import pick_device
from prunescope.runlog import rule_logging
from prunescope.sae import evaluate_sae, load_sae

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    w = snakemake.wildcards
    # The dense SAE keeps its own normalisation statistics: a practitioner reusing a
    # pretrained SAE on a pruned model does not re-fit them either.
    sae = load_sae(Path(snakemake.input.sae).parent, pick_device(snakemake.params.device))
    with open_cache(
        snakemake.input.activations, capture_settings=snakemake.params.capture
    ) as cache:
        source = f"the eval split of layer {w.layer} activations in {snakemake.input.activations}"
        metrics = evaluate_sae(sae, cache["eval"], snakemake.params.batch_size, source)
    result = {
        "model": w.model,
        "layer": int(w.layer),
        "condition": w.cond,
        "sae": snakemake.params.label,
        "sae_kind": "trained",
        "sae_format": "prunescope",
        "fvu": metrics["fvu"],
        "fvu_normalised": metrics["fvu_normalised"],
        "l0": metrics["l0"],
        "alive": metrics["alive"],
        "d_sae": metrics["d_sae"],
        "n_eval_tokens": metrics["n_eval_tokens"],
    }
    log.info("%s", result)
    write_json(snakemake.output[0], result)
