"""Study ALIGN: train the dense net (learnable C0) and record codes every epoch (Fig. A1)."""

from prunescope.align.data import load_dataset
from prunescope.align.experiment import train_dense_net
from prunescope.align.net import save_nets
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    p = snakemake.params
    data = load_dataset(snakemake.input[0])
    nets, history = train_dense_net(data, **p.training, seed=p.seed)
    save_nets(snakemake.output.net, nets, {"seed": str(p.seed)})
    w = snakemake.wildcards
    write_csv(snakemake.output.history, history.assign(task=w.task, trial=int(w.trial)))
