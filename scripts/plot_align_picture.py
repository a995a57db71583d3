"""Study ALIGN: heat maps of W1 and C1 for one trial (Figs. 1, 3, A2, A4, A5)."""

import pandas as pd

from prunescope.align.data import load_dataset
from prunescope.align.experiment import load_variant_nets, magnitude_pruned, picture_sparsities
from prunescope.align.figures import dense_picture, method_picture, sparsity_picture
from prunescope.align.net import load_nets
from prunescope.figures import save_figure
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    p = snakemake.params
    net = load_nets(snakemake.input.net).variant(0)
    clauses = load_dataset(snakemake.input.data).clauses
    task = snakemake.wildcards.task
    if p.picture == "fig1":
        fig = dense_picture(net, clauses)
    elif p.picture in ("fig3", "figA2"):
        pruned = [(s, magnitude_pruned(net["W1"], s)) for s in picture_sparsities(p.sweep)]
        title = f"Fig. {p.picture[3:]}: {task} under magnitude pruning of W1"
        fig = sparsity_picture(net, clauses, pruned, title)
    else:
        variants = pd.read_csv(snakemake.input.variants)
        _, masks = load_variant_nets(snakemake.input.pruned)
        chosen = variants[(variants["sparsity"] == p.sparsity)]
        chosen = chosen[chosen["method"].isin(["mp", "obd", "obs", "mip"])]
        by_method = {row.method: masks[row.variant] for row in chosen.itertuples()}
        fig = method_picture(net, clauses, by_method, p.sparsity, f"Fig. {p.picture[3:]}: {task}")
    save_figure(fig, snakemake.output[0])
