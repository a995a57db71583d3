"""New features: per condition, the share of its SAE's features that no dense-SAE feature
matches in activation, beside the same share for a dense SAE of the same seed."""

import pandas as pd

from prunescope.io import write_csv
from prunescope.runlog import rule_logging
from prunescope.survival import new_feature_table

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    reverse = {
        (model, int(layer), cond): pd.read_csv(path)
        for (model, layer, cond), path in zip(p.conditions, snakemake.input, strict=True)
    }
    table = new_feature_table(reverse, p.taus)
    write_csv(snakemake.output.table, table)
    log.info("\n%s", table.to_string())
