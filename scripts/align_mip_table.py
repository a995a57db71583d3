"""Study ALIGN: the MIP oracle's solves (neurons proven optimal, gaps, nodes) and, apart from
that table, their times."""

from prunescope.align.experiment import load_mip_solution
from prunescope.align.results import mip_neuron_table, mip_seconds, mip_summary
from prunescope.io import write_csv
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]):
    neurons = mip_neuron_table([load_mip_solution(path) for path in snakemake.input])
    write_csv(snakemake.output.table, mip_summary(neurons))
    write_csv(snakemake.output.seconds, mip_seconds(neurons))
