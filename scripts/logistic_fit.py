"""Logistic fit: P(feature survives) from log firing rate and sparsity, per model and method."""

from collections import defaultdict

import pandas as pd

from prunescope.analysis import fit_logit_for, logistic_rows, reference_firing_rates
from prunescope.io import atomic_path
from prunescope.matching import load_matches
from prunescope.plan import parse_condition
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    firing = reference_firing_rates(snakemake.input.dense)
    grouped = defaultdict(lambda: defaultdict(list))
    for path in snakemake.input.matches:
        match = load_matches(path)
        a = match.attrs
        method, sparsity = parse_condition(a["cond_b"])
        grouped[(a["model"], a["layer"], method)][sparsity].append(match)
    rows, summaries = [], []
    for (model, layer, method), by_sparsity in grouped.items():
        for tau in snakemake.params.taus:
            fit = fit_logit_for(firing[(model, layer)], by_sparsity, tau)
            rows += logistic_rows(fit, model=model, layer=layer, method=method)
            header = f"== {model} L{layer} {method} tau={tau:g} =="
            summaries.append(f"{header}\n{fit['note'] or ''}\n{fit['summary'] or ''}\n")
            log.info(
                "%s AUC %.3f accuracy %.3f %s", header, fit["auc"], fit["accuracy"], fit["note"]
            )
    with atomic_path(snakemake.output.table) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    with atomic_path(snakemake.output.summaries) as tmp:
        tmp.write_text("\n".join(summaries))
