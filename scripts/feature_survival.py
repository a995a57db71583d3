"""RQ2: dense vs pruned SAE match rates, and their ratio to the seed-to-seed floor (Figure 2)."""

import pandas as pd

from prunescope.analysis import add_seed_floor, match_rate_records, summarise_pairs
from prunescope.figures import line_by_sparsity, save_figure
from prunescope.io import atomic_path
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    records = match_rate_records(snakemake.input.matches, side="b")
    table = summarise_pairs(records, ["model", "layer", "condition", "method", "sparsity", "tau"])
    table = add_seed_floor(table, pd.read_csv(snakemake.input.stability))
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, index=False)
    tau = snakemake.params.tau
    primary = table[table["tau"] == tau]
    log.info("dense->pruned MNN at tau %.2f:\n%s", tau, primary.to_string())
    fig = line_by_sparsity(
        primary,
        "mnn_mean",
        "mnn_std",
        f"dense→pruned MNN at τ={tau:g}",
        "RQ2 feature survival",
        False,
    )
    save_figure(fig, snakemake.output.figure)
