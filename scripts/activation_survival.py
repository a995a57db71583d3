"""Activation-level survival: the dense reference SAE on the dense and on one pruned
condition's eval activations of the same tokens, feature by feature, beside the same
comparison with a random perturbation as large as pruning's (the matched-noise control)."""

from pathlib import Path

from prunescope.activations import check_token_aligned, open_cache
from prunescope.io import write_csv
from prunescope.models import pick_device
from prunescope.runlog import rule_logging
from prunescope.sae import load_sae
from prunescope.survival import activation_survival

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    i, p = snakemake.input, snakemake.params
    # row i of both caches must be the same token, or the correlations mean nothing
    check_token_aligned(i.dense, i.pruned, split="eval")
    sae = load_sae(Path(i.sae).parent, pick_device(p.device))
    with (
        open_cache(i.dense, capture_settings=p.dense_capture) as dense,
        open_cache(i.pruned, capture_settings=p.capture) as pruned,
    ):
        table = activation_survival(
            dense["eval"],
            pruned["eval"],
            sae,
            control_seed=p.noise_seed,
            sources=(f"the eval split of {i.dense}", f"the eval split of {i.pruned}"),
        )
    write_csv(snakemake.output[0], table)
    alive = table["dense_rate"] > 0
    log.info(
        "%d rows; %d alive dense features; median correlation %.3f",
        table.attrs["n_rows"],
        int(alive.sum()),
        float(table.loc[alive, "correlation"].median()),
    )
    log.info(
        "median correlation under matched noise %.3f",
        float(table.loc[alive, "control_correlation"].median()),
    )
