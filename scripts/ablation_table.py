"""Table 4 and Figure 6: robust vs fragile ablation KL, dense and pruned, per model."""

import pandas as pd

from prunescope.figures import ablation_bars, save_figure
from prunescope.io import atomic_path, read_json
from prunescope.runlog import rule_logging

COLUMNS = [
    "model",
    "layer",
    "side",
    "condition",
    "mode",
    "selection",
    "robust_kl",
    "fragile_kl",
    "delta_pct",
    "robust_sem",
    "fragile_sem",
    "n_robust",
    "n_fragile",
    "robust_fired_fraction",
    "fragile_fired_fraction",
    "robust_kl_when_fired",
    "fragile_kl_when_fired",
    "n_robust_fired",
    "n_fragile_fired",
    "n_prompts",
    "context",
    "reconstruction_baseline_kl",
    "selection_note",
]

with rule_logging(snakemake.log[0]) as log:
    table = pd.DataFrame([read_json(path) for path in snakemake.input])[COLUMNS]
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, index=False)
    log.info("\n%s", table.to_string())
    save_figure(ablation_bars(table), snakemake.output.figure)
