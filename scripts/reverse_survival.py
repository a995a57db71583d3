"""Reverse view: each feature of one condition's SAE (on that condition's eval activations)
and the dense reference SAE feature (on the dense activations of the same tokens) whose
activations correlate with it most."""

from pathlib import Path

from prunescope.activations import aligned_eval_splits
from prunescope.io import write_csv
from prunescope.models import pick_device
from prunescope.runlog import rule_logging
from prunescope.sae import load_sae
from prunescope.survival import best_dense_partners

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    i, p = snakemake.input, snakemake.params
    with aligned_eval_splits(i.dense, i.activations, p.dense_capture, p.capture) as (
        dense,
        own,
        (dense_name, own_name),
    ):
        device = pick_device(p.device)
        dense_sae = load_sae(Path(i.dense_sae).parent, device)
        sae = load_sae(Path(i.sae).parent, device)
        reverse = best_dense_partners(
            own, dense, sae, dense_sae, p.taus, sources=(own_name, dense_name)
        )
    write_csv(snakemake.output[0], reverse.table())
    log.info("%d rows\n%s", reverse.n_rows, reverse.counts().to_string())
