"""RQ1: match rates between every pair of seeds within a condition (Figure 1)."""

from prunescope.analysis import match_rate_records, summarise_pairs
from prunescope.figures import line_by_sparsity, save_figure
from prunescope.io import atomic_path
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    records = match_rate_records(snakemake.input, side="a")
    if not records:
        raise ValueError("seed stability needs at least two SAE seeds per condition (sae.seeds)")
    table = summarise_pairs(records, ["model", "layer", "condition", "method", "sparsity", "tau"])
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, index=False)
    tau = snakemake.params.tau
    primary = table[table["tau"] == tau]
    log.info("seed-to-seed MNN at tau %.2f:\n%s", tau, primary.to_string())
    fig = line_by_sparsity(
        primary, "mnn_mean", "mnn_std", f"seed-to-seed MNN at τ={tau:g}", "RQ1 seed stability", True
    )
    save_figure(fig, snakemake.output.figure)
