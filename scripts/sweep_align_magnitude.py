"""Study ALIGN, Fig. 2: loss and codes of the dense net under per-row magnitude pruning."""

from prunescope.align.data import load_dataset
from prunescope.align.experiment import magnitude_sweep
from prunescope.align.net import load_nets
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads):
    w = snakemake.wildcards
    dense = load_nets(snakemake.input.net).variant(0)
    data = load_dataset(snakemake.input.data)
    sweep = magnitude_sweep(dense, data, sorted(snakemake.params.sparsities))
    write_csv(snakemake.output[0], sweep.assign(task=w.task, trial=int(w.trial)))
