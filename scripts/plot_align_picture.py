"""Study ALIGN: heat maps of W1 and C1 for one trial (Figs. 1, 3, A2, A4, A5)."""

from prunescope.align.pictures import plot_picture
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    p = snakemake.params
    i = snakemake.input
    plot_picture(
        p.picture,
        snakemake.output[0],
        net=i.net,
        data=i.data,
        pruned=i.pruned,
        variants=i.variants,
        sweep=p.sweep,
        sparsity=p.sparsity,
        task=snakemake.wildcards.task,
    )
