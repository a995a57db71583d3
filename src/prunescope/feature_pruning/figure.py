"""The LM analogue of Study ALIGN's Fig. A3: does distortion in feature space or in
weight space track what pruning costs?"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from prunescope.feature_pruning.tables import DISTORTIONS, outcome_values
from prunescope.figures import METHOD_PALETTE, save_figure

LABELS = {
    "weight_distortion": "weight space  ‖ΔW‖² / ‖W‖²",
    "input_distortion": "input space  ‖ΔW X‖² / ‖W X‖²",
    "feature_distortion_uniform": "feature space, uniform  ‖ΔW U‖² / ‖W U‖²",
    "feature_distortion_energy": "feature space, energy-weighted",
}
OUTCOME_LABELS = {
    "perplexity_increase": "perplexity increase",
    "activation_loss": "1 − activation-level survival",
}


def distortion_figure(table: pd.DataFrame, ranks: pd.DataFrame, path) -> None:
    """One row per (model, layer) and outcome, one column per distortion measure: the
    pruned conditions as points coloured by method, Spearman rho in each title."""
    groups = list(table.groupby(["model", "layer"], sort=False))
    n_rows = max(len(groups), 1) * len(OUTCOME_LABELS)
    fig, axes = plt.subplots(
        n_rows, len(DISTORTIONS), figsize=(4.0 * len(DISTORTIONS), 3.2 * n_rows), squeeze=False
    )
    row = 0
    for (model, layer), group in groups:
        outcomes = outcome_values(group)
        for outcome, label in OUTCOME_LABELS.items():
            for col, measure in enumerate(DISTORTIONS):
                ax = axes[row][col]
                _scatter(ax, group, measure, outcomes[outcome])
                rho = ranks[
                    (ranks["model"] == model)
                    & (ranks["layer"] == layer)
                    & (ranks["distortion"] == measure)
                    & (ranks["outcome"] == outcome)
                ]["spearman_rho"]
                rho_text = f"ρ = {float(rho.iloc[0]):.2f}" if len(rho) else ""
                ax.set_title(f"{model} L{layer}: {rho_text}", fontsize=9)
                ax.set_xlabel(LABELS[measure], fontsize=8)
                ax.set_ylabel(label if col == 0 else "", fontsize=8)
            row += 1
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="upper center", ncol=len(names), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path)


def _scatter(ax, group: pd.DataFrame, measure: str, outcome: pd.Series) -> None:
    for method, points in group.assign(outcome=outcome).groupby("method", sort=True):
        ax.scatter(
            points[measure],
            points["outcome"],
            label=method,
            color=METHOD_PALETTE.get(method),
            s=18 + 60 * points["sparsity"],
        )
        for _, point in points.iterrows():
            ax.annotate(f"{point['sparsity']:g}", (point[measure], point["outcome"]), fontsize=6)
