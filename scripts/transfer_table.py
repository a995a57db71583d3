"""Table 2 and Figure 3: FVU and L0 of the dense SAE on every condition's activations."""

import pandas as pd

from prunescope.analysis import condition_columns
from prunescope.figures import line_by_sparsity, save_figure
from prunescope.io import atomic_path, read_json
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    rows = []
    for path in snakemake.input:
        r = read_json(path)
        rows.append({**r, **condition_columns(r["condition"])})
    table = pd.DataFrame(rows)[
        ["model", "layer", "condition", "method", "sparsity", "fvu", "l0", "alive", "n_eval_tokens"]
    ].sort_values(["model", "layer", "method", "sparsity"], ignore_index=True)
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, index=False)
    log.info("\n%s", table.to_string())
    fig = line_by_sparsity(table, "fvu", None, "FVU of the dense SAE", "RQ3 transfer", True)
    save_figure(fig, snakemake.output.figure)
