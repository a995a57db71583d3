"""Reverse view: each feature of one condition's SAE (on that condition's eval activations)
and the dense reference SAE feature (on the dense activations of the same tokens) whose
activations correlate with it most."""

from pathlib import Path

from prunescope.activations import check_token_aligned, open_cache
from prunescope.io import write_csv
from prunescope.models import pick_device
from prunescope.runlog import rule_logging
from prunescope.sae import load_sae
from prunescope.survival import best_dense_partners

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    i, p = snakemake.input, snakemake.params
    check_token_aligned(i.dense, i.activations, split="eval")
    device = pick_device(p.device)
    dense_sae = load_sae(Path(i.dense_sae).parent, device)
    sae = load_sae(Path(i.sae).parent, device)
    with (
        open_cache(i.dense, capture_settings=p.dense_capture) as dense,
        open_cache(i.activations, capture_settings=p.capture) as own,
    ):
        reverse = best_dense_partners(
            own["eval"],
            dense["eval"],
            sae,
            dense_sae,
            p.taus,
            sources=(f"the eval split of {i.activations}", f"the eval split of {i.dense}"),
        )
    write_csv(snakemake.output[0], reverse.table())
    log.info("%d rows\n%s", reverse.n_rows, reverse.counts().to_string())
