"""RQ4, Table 3 and Figures 4-5: survival of dense features by firing-rate quintile."""

import pandas as pd

from prunescope.analysis import condition_columns, quintile_rows, reference_firing_rates
from prunescope.figures import quintile_by_method, quintile_lines, save_figure
from prunescope.io import atomic_path
from prunescope.matching import load_matches
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    p = snakemake.params
    firing = reference_firing_rates(snakemake.input.dense)
    summaries, quintiles = [], []
    for path in snakemake.input.matches:
        match = load_matches(path)
        a = match.attrs
        keys = {"model": a["model"], "layer": a["layer"], **condition_columns(a["cond_b"])}
        for tau in p.taus:
            per_q, summary = quintile_rows(
                firing[(a["model"], a["layer"])], match, tau, n_boot=p.bootstrap, seed=p.seed
            )
            summaries.append({**keys, **summary})
            quintiles.append(per_q.assign(**keys))
    summary = pd.DataFrame(summaries)
    table3 = summary[summary["tau"] == p.primary_tau].reset_index(drop=True)
    long = pd.concat(quintiles, ignore_index=True)
    with atomic_path(snakemake.output.table) as tmp:
        table3.to_csv(tmp, index=False)
    with atomic_path(snakemake.output.quintiles) as tmp:
        long.to_csv(tmp, index=False)
    log.info("Table 3 (tau %.2f):\n%s", p.primary_tau, table3.to_string())
    for _, row in table3[table3["note"] != ""].iterrows():
        log.info("%s %s: %s", row["model"], row["condition"], row["note"])
    save_figure(quintile_lines(table3, p.primary_tau), snakemake.output.figure)
    save_figure(quintile_by_method(long, p.primary_tau), snakemake.output.by_method)
