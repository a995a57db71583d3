"""The paper's figures (1-6) drawn with seaborn from the analysis tables."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from prunescope.io import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="paper")
METHOD_PALETTE = {"magnitude": "tab:blue", "wanda": "tab:orange", "sparsegpt": "tab:green"}


# PDFs carry their creation date unless told not to; without it the same figure gives the
# same bytes on every run (the PNG writer stores no date)
_REPRODUCIBLE_METADATA = {"png": None, "pdf": {"CreationDate": None}}


def save_figure(fig, png_path: str | Path) -> None:
    """Write the figure as PNG (for the report) and PDF (for papers) next to each other,
    byte for byte the same whenever the figure is."""
    png_path = Path(png_path)
    for path in (png_path, png_path.with_suffix(".pdf")):
        kind = path.suffix[1:]
        with atomic_path(path) as tmp:
            fig.savefig(
                tmp,
                format=kind,
                dpi=150,
                bbox_inches="tight",
                metadata=_REPRODUCIBLE_METADATA[kind],
            )
    plt.close(fig)


def _palette(methods) -> dict:
    extra = sns.color_palette("tab10", 10)
    return {m: METHOD_PALETTE.get(m, extra[i % 10]) for i, m in enumerate(sorted(set(methods)))}


def _facets(frame: pd.DataFrame):
    panels = list(frame.groupby(["model", "layer"], sort=False))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4))
    return fig, list(axes if len(panels) > 1 else [axes]), panels


def _with_dense_per_method(frame: pd.DataFrame) -> pd.DataFrame:
    """Draw the dense point (sparsity 0) at the start of every method's line."""
    dense = frame[frame["method"] == "dense"]
    methods = sorted(set(frame["method"]) - {"dense"})
    copies = [dense.assign(method=m) for m in methods]
    return pd.concat([frame[frame["method"] != "dense"], *copies], ignore_index=True)


def line_by_sparsity(
    frame: pd.DataFrame, y: str, err: str | None, ylabel: str, title: str, with_dense: bool
):
    """A metric against sparsity, one line per method, one panel per model and layer."""
    data = _with_dense_per_method(frame) if with_dense else frame[frame["method"] != "dense"]
    fig, axes, panels = _facets(data)
    palette = _palette(data["method"])
    for ax, ((model, layer), panel) in zip(axes, panels, strict=False):
        for method, rows in panel.groupby("method"):
            rows = rows.sort_values("sparsity")
            ax.errorbar(
                rows["sparsity"],
                rows[y],
                yerr=None if err is None else rows[err].fillna(0),
                marker="o",
                capsize=3,
                label=method,
                color=palette[method],
            )
        ax.set(title=f"{model} L{layer}", xlabel="sparsity", ylabel=ylabel)
    axes[0].legend(title="method")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def quintile_lines(table3: pd.DataFrame, tau: float, ylabel: str | None = None):
    """Figure 4: survival per firing-rate quintile, one line per method and sparsity."""
    fig, axes, panels = _facets(table3)
    palette = _palette(table3["method"])
    for ax, ((model, layer), panel) in zip(axes, panels, strict=False):
        for _, row in panel.sort_values(["method", "sparsity"]).iterrows():
            values = [row[f"Q{q}"] for q in range(1, 6)]
            alpha = 0.35 + 0.65 * float(row["sparsity"]) / max(panel["sparsity"].max(), 1e-9)
            ax.plot(
                range(1, 6),
                values,
                marker="o",
                color=palette[row["method"]],
                alpha=alpha,
                label=f"{row['method']} {row['sparsity']:g}",
            )
        ax.set(
            title=f"{model} L{layer}",
            xlabel="firing-rate quintile (1 = rarest)",
            ylabel=ylabel or f"MNN survival at τ={tau:g}",
            xticks=range(1, 6),
        )
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def quintile_by_method(quintiles: pd.DataFrame, tau: float):
    """Figure 5: survival per quintile grouped by method (mean ± sd over sparsities and models)."""
    data = quintiles[quintiles["tau"] == tau]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    sns.pointplot(
        data=data,
        x="quintile",
        y="survival",
        hue="method",
        errorbar="sd",
        dodge=0.25,
        palette=_palette(data["method"]),
        ax=ax,
        capsize=0.1,
    )
    ax.set(xlabel="firing-rate quintile (1 = rarest)", ylabel=f"MNN survival at τ={tau:g}")
    fig.tight_layout()
    return fig


def ablation_bars(table4: pd.DataFrame):
    """Figure 6: mean KL of robust vs fragile single-feature ablations (± SEM)."""
    long = pd.concat(
        [
            table4.assign(kind="robust", kl=table4["robust_kl"], sem=table4["robust_sem"]),
            table4.assign(kind="fragile", kl=table4["fragile_kl"], sem=table4["fragile_sem"]),
        ]
    )
    pruned = long["side"] == "pruned"
    long["panel"] = long["model"] + " " + long["side"]
    long.loc[pruned, "panel"] += " (" + long.loc[pruned, "condition"] + ")"
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * long["panel"].nunique()), 3.4))
    panels = list(dict.fromkeys(long["panel"]))
    width = 0.38
    for i, kind in enumerate(("robust", "fragile")):
        rows = long[long["kind"] == kind].set_index("panel").loc[panels]
        xs = [p + (i - 0.5) * width for p in range(len(panels))]
        ax.bar(xs, rows["kl"], width, yerr=rows["sem"].fillna(0), capsize=3, label=kind)
    ax.set_xticks(range(len(panels)), panels, rotation=20, ha="right")
    ax.set(ylabel="mean KL(original ‖ ablated)")
    ax.legend()
    fig.tight_layout()
    return fig
