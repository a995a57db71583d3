"""Study ALIGN: fine-tune every pruned variant with its mask fixed; track code persistence."""

import pandas as pd

from prunescope.align.data import load_dataset
from prunescope.align.experiment import (
    code_maps,
    finetune_variants,
    load_variant_nets,
    net_metrics,
    persistence_frame,
    save_variant_nets,
)
from prunescope.align.net import load_nets
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    data = load_dataset(snakemake.input.data)
    dense = load_nets(snakemake.input.dense).variant(0)
    nets, masks = load_variant_nets(snakemake.input.nets)
    pruned = pd.read_csv(snakemake.input.pruned)
    before = code_maps(nets, data.clauses) if data.clauses is not None else None
    nets = finetune_variants(nets, masks, data, **p.finetuning, seed=p.seed)
    save_variant_nets(snakemake.output.nets, nets, masks)
    metrics = net_metrics(nets, data, dense)
    if before is not None:
        metrics = pd.concat(
            [metrics, persistence_frame(before, code_maps(nets, data.clauses))], axis=1
        )
    keys = ["variant", "method", "sparsity", "task", "structure", "trial"]
    write_csv(snakemake.output.metrics, pd.concat([pruned[keys], metrics], axis=1))
