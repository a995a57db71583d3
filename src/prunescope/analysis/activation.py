"""RQ2 and RQ4 under activation-level survival: survival at every threshold, the Table 3
layout and the per-quintile table, for the dictionary trained here and any trained
elsewhere, each beside its matched-noise control."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from prunescope.analysis.definitions import condition_columns, keys_first
from prunescope.analysis.quintiles import activation_quintile_rows
from prunescope.survival import survival_fractions


def activation_survival_tables(
    per_feature: dict[tuple[str, int, str, str], pd.DataFrame],
    taus: Sequence[float],
    primary_tau: float,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From each (model, layer, condition, SAE)'s per-feature table: survival at every tau
    (with the counts behind it), the Table 3 layout at ``primary_tau``, and the long
    per-quintile table at every tau. Each row names its survival definition and, in column
    ``sae``, the dictionary whose features it follows (the dense SAE trained here, or one
    trained elsewhere)."""
    fractions, summaries, quintiles = [], [], []
    for (model, layer, cond, sae), table in per_feature.items():
        for definition, view in activation_views(table).items():
            keys = {"model": model, "layer": layer, "sae": sae, **condition_columns(cond)}
            keys["definition"] = definition
            fractions.append(survival_fractions(view, taus).assign(**keys))
            for tau in taus:
                per_q, summary = activation_quintile_rows(view, tau, n_boot=n_boot, seed=seed)
                summaries.append({**keys, **summary})
                quintiles.append(per_q.assign(**keys))
    summary = pd.DataFrame(summaries)
    table3 = summary[summary["tau"] == primary_tau].reset_index(drop=True)
    return (
        keys_first(pd.concat(fractions, ignore_index=True)),
        table3,
        keys_first(pd.concat(quintiles, ignore_index=True)),
    )


def activation_views(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The per-feature table once per definition it holds: ``activation`` as is and, when
    the noise control was run, ``matched_noise`` with the control's columns in the places
    of the pruned ones, so one set of summaries serves both."""
    views = {"activation": table}
    if "control_correlation" in table:
        control = table.assign(
            pruned_rate=table["control_rate"], correlation=table["control_correlation"]
        )
        views["matched_noise"] = control.drop(columns=["jaccard", "mean_ratio"])
    return views
