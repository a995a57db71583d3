"""Table 4 and Figure 6: robust vs fragile ablation KL, dense and pruned, per model."""

from prunescope.figures import ablation_bars, save_figure
from prunescope.io import read_json, write_csv
from prunescope.robust_fragile import ablation_table
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    table = ablation_table(read_json(path) for path in snakemake.input)
    write_csv(snakemake.output.table, table)
    log.info("\n%s", table.to_string())
    save_figure(ablation_bars(table), snakemake.output.figure)
