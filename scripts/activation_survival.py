"""Activation-level survival: one fixed dictionary (the dense reference SAE, or an SAE
trained elsewhere) on the dense and on one pruned condition's eval activations of the same
tokens, feature by feature, beside the same comparison with a random perturbation as large
as pruning's (the matched-noise control)."""

from prunescope.activations import aligned_eval_splits
from prunescope.io import write_csv
from prunescope.models import pick_device
from prunescope.pretrained import load_dictionary
from prunescope.runlog import rule_logging
from prunescope.survival import activation_survival

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu) as log:
    i, p = snakemake.input, snakemake.params
    with aligned_eval_splits(i.dense, i.pruned, p.dense_capture, p.capture) as (
        dense,
        pruned,
        names,
    ):
        sae = load_dictionary(i.sae, pick_device(p.device))
        table = activation_survival(dense, pruned, sae, control_seed=p.noise_seed, sources=names)
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
