"""RQ3 as the paper did it: an SAE trained elsewhere on the dense model applied, unchanged,
to one condition's eval activations."""

from prunescope.activations import open_cache
from prunescope.io import write_json
from prunescope.models import pick_device
from prunescope.pretrained import load_imported_sae
from prunescope.runlog import rule_logging
from prunescope.transfer import reconstruction_metrics

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    w, p = snakemake.wildcards, snakemake.params
    with open_cache(snakemake.input.activations, capture_settings=p.capture) as cache:
        rows = cache["eval"]
        sae, record = load_imported_sae(
            snakemake.input.sae, pick_device(p.device), d_model=rows.shape[1]
        )
        source = f"the eval split of layer {w.layer} activations in {snakemake.input.activations}"
        metrics = reconstruction_metrics(sae, rows, p.batch_size, source)
    result = {
        "model": w.model,
        "layer": int(w.layer),
        "condition": w.cond,
        "sae": record["label"],
        "sae_kind": "pretrained",
        "sae_format": record["format"],
        **metrics,
    }
    log.info("%s", result)
    write_json(snakemake.output[0], result)
