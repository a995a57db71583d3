"""Table 2 and Figure 3: FVU and L0 of the dense SAE trained here and of any SAE trained
elsewhere, on every condition's activations."""

from prunescope.figures import save_figure, transfer_lines
from prunescope.io import read_json, write_csv
from prunescope.runlog import rule_logging
from prunescope.transfer import transfer_table

with rule_logging(snakemake.log[0]) as log:
    table = transfer_table(read_json(path) for path in snakemake.input)
    write_csv(snakemake.output.table, table)
    log.info("\n%s", table.to_string())
    save_figure(transfer_lines(table), snakemake.output.figure)
