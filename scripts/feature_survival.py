"""RQ2: dense vs pruned SAE match rates per definition (paired_init, cross_seed), beside the
dense seed-to-seed floor (Figure 2)."""

import pandas as pd

from prunescope.analysis import survival_records, survival_table, write_survival_table
from prunescope.figures import line_by_sparsity, save_figure
from prunescope.matching import load_matches
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    records = survival_records(map(load_matches, snakemake.input.matches))
    table = survival_table(records, pd.read_csv(snakemake.input.stability))
    write_survival_table(snakemake.output.table, table)
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
        style="definition",
        floor="seed_floor_mnn",
    )
    save_figure(fig, snakemake.output.figure)
