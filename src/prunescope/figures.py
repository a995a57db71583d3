"""The paper's figures (1-6) drawn with seaborn from the analysis tables."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from prunescope.io import atomic_path  # noqa: E402

log = logging.getLogger("prunescope")
sns.set_theme(style="whitegrid", context="paper")
METHOD_PALETTE = {
    "magnitude": "tab:blue",
    "wanda": "tab:orange",
    "sparsegpt": "tab:green",
    "feature": "tab:red",
    "feature_hybrid": "tab:purple",
}


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


def _facets(frame: pd.DataFrame, legend_width: float = 0.0, by=("model", "layer")):
    """One panel per (model, layer) (or per value of the columns ``by``); ``legend_width``
    inches more per panel for a legend drawn beside it."""
    panels = list(frame.groupby(list(by), sort=False))
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=((4.2 + legend_width) * n, 3.4))
    return fig, list(axes if len(panels) > 1 else [axes]), panels


def _with_dense_per_method(frame: pd.DataFrame) -> pd.DataFrame:
    """Draw the dense point (sparsity 0) at the start of every method's line."""
    dense = frame[frame["method"] == "dense"]
    methods = sorted(set(frame["method"]) - {"dense"})
    copies = [dense.assign(method=m) for m in methods]
    return pd.concat([frame[frame["method"] != "dense"], *copies], ignore_index=True)


# How each survival definition is drawn: solid for what a table reports first, dashed for
# the control beside it, dotted for the dense seed floor.
DEFINITION_LINESTYLES = {
    "activation": "-",
    "paired_init": "-",
    "cross_seed": "--",
    "matched_noise": "--",
    "seed_floor": ":",
}


def _linestyle(definition) -> str:
    return DEFINITION_LINESTYLES.get(definition, "-.")


STYLE_CYCLE = ("-", "--", ":", "-.")
"""Line styles, in order of first appearance, for the values of any other ``style`` column."""


def _line_styles(style: str | None, keys: list) -> dict:
    if style == "definition":
        return {key: _linestyle(key) for key in keys}
    return {key: STYLE_CYCLE[i % len(STYLE_CYCLE)] for i, key in enumerate(keys)}


def _definitions(frame: pd.DataFrame) -> list:
    """The definitions in ``frame`` (None if it has none), in DEFINITION_LINESTYLES' order."""
    if "definition" not in frame.columns:
        return [None]
    order = list(DEFINITION_LINESTYLES)
    present = set(frame["definition"])
    return [d for d in order if d in present] + sorted(present - set(order))


def line_by_sparsity(
    frame: pd.DataFrame,
    y: str,
    err: str | None,
    ylabel: str,
    title: str,
    with_dense: bool,
    *,
    style: str | None = None,
    floor: str | None = None,
):
    """A metric against sparsity, one line per method, one panel per model and layer.

    ``style``: a column (such as ``definition``, or ``sae_kind`` in Figure 3) whose values
    get a line style each within a method's colour. ``floor``: a column holding one
    reference value per panel, drawn as a grey horizontal line (the dense seed floor).
    """
    data = _with_dense_per_method(frame) if with_dense else frame[frame["method"] != "dense"]
    fig, axes, panels = _facets(data)
    palette = _palette(data["method"])
    styles = _line_styles(style, list(dict.fromkeys(data[style]))) if style else {None: "-"}
    for ax, ((model, layer), panel) in zip(axes, panels, strict=False):
        for method, by_method in panel.groupby("method"):
            styled = by_method.groupby(style, sort=False) if style else [(None, by_method)]
            lines = dict(list(styled))
            for key in _definitions(by_method) if style == "definition" else lines:
                rows = lines[key].sort_values("sparsity")
                ax.errorbar(
                    rows["sparsity"],
                    rows[y],
                    yerr=None if err is None else rows[err].fillna(0),
                    marker="o",
                    capsize=3,
                    label=method if key is None else f"{method} {key}",
                    color=palette[method],
                    linestyle=styles[key],
                )
        if floor is not None and panel[floor].notna().any():
            ax.axhline(
                panel[floor].dropna().iloc[0], color="grey", linestyle=":", label="dense seed floor"
            )
        ax.set(title=f"{model} L{layer}", xlabel="sparsity", ylabel=ylabel)
    axes[0].legend(title="method", fontsize=6 if style else None)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def mnn_lines(table: pd.DataFrame, tau: float, pairs: str, title: str, with_dense: bool, **style):
    """A table of match rates over seed pairs: its MNN (mean ± std over the pairs) at
    ``tau`` against sparsity; the rows drawn are logged.

    ``pairs`` names what was matched (``seed-to-seed``, ``dense->pruned``; the figure
    draws ``->`` as an arrow); ``style`` goes to ``line_by_sparsity``.
    """
    primary = table[table["tau"] == tau]
    log.info("%s MNN at tau %.2f:\n%s", pairs, tau, primary.to_string())
    ylabel = f"{pairs.replace('->', '→')} MNN at τ={tau:g}"
    return line_by_sparsity(primary, "mnn_mean", "mnn_std", ylabel, title, with_dense, **style)


def seed_stability_lines(table: pd.DataFrame, tau: float):
    """Figure 1: seed-to-seed MNN within each condition, dense at every method's start."""
    return mnn_lines(table, tau, "seed-to-seed", "RQ1 seed stability", True)


def survival_lines(table: pd.DataFrame, tau: float):
    """Figure 2: dense->pruned MNN per definition, beside the dense seed floor."""
    return mnn_lines(
        table,
        tau,
        "dense->pruned",
        "RQ2 feature survival",
        False,
        style="definition",
        floor="seed_floor_mnn",
    )


def transfer_lines(table2: pd.DataFrame):
    """Figure 3: each SAE's FVU on every condition's activations, one line style per kind
    of SAE (trained here, pretrained)."""
    ylabel = "FVU on the condition's activations"
    return line_by_sparsity(table2, "fvu", None, ylabel, "RQ3 transfer", True, style="sae_kind")


def quintile_lines(table3: pd.DataFrame, tau: float, ylabel: str | None = None):
    """Figure 4: survival per firing-rate quintile, one line per method and sparsity.

    With a ``definition`` column each definition gets its line style (DEFINITION_LINESTYLES)
    and the dense seed floor, a row of its own, is drawn in black. With an ``sae`` column
    naming more than one dictionary, each gets panels of its own.
    """
    by = ["model", "layer"]
    if "sae" in table3.columns and table3["sae"].nunique() > 1:
        by.append("sae")
    fig, axes, panels = _facets(table3, legend_width=2.4, by=by)
    pruned = table3[table3["method"] != "dense"]
    palette = _palette(pruned["method"])
    for ax, (key, panel) in zip(axes, panels, strict=False):
        model, layer = key[:2]
        title = f"{model} L{layer}" + (f"\n{_short(key[2])}" if len(key) > 2 else "")
        for definition in _definitions(panel):
            rows = panel if definition is None else panel[panel["definition"] == definition]
            for _, row in rows.sort_values(["method", "sparsity"]).iterrows():
                values = [row[f"Q{q}"] for q in range(1, 6)]
                label = f"{row['method']} {row['sparsity']:g}"
                if row["method"] == "dense":
                    color, alpha, label = "black", 1.0, "dense"
                else:
                    color = palette[row["method"]]
                    sparsest = max(panel["sparsity"].max(), 1e-9)
                    alpha = 0.35 + 0.65 * float(row["sparsity"]) / sparsest
                ax.plot(
                    range(1, 6),
                    values,
                    marker="o",
                    color=color,
                    alpha=alpha,
                    linestyle=_linestyle(definition),
                    label=label if definition is None else f"{label} {definition}",
                )
        ax.set(
            title=title,
            xlabel="firing-rate quintile (1 = rarest)",
            ylabel=ylabel or f"MNN survival at τ={tau:g}",
            xticks=range(1, 6),
        )
        # beside the axes: with two definitions per condition a legend inside covers lines
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def _short(label: str, width: int = 48) -> str:
    """A long SAE name (a hub repo and path) cut to fit over a panel, keeping its end."""
    return label if len(label) <= width else "…" + label[-(width - 1) :]


def quintile_by_method(quintiles: pd.DataFrame, tau: float):
    """Figure 5: survival per quintile grouped by method (mean ± sd over sparsities and models).

    With a ``definition`` column, one panel per definition of a pruned SAE (each on its own
    y scale), and the dense seed floor (its mean over models) as a black dotted line in each.
    """
    data = quintiles[quintiles["tau"] == tau]
    definitions = [d for d in _definitions(data) if d != "seed_floor"]
    fig, axes = plt.subplots(1, len(definitions), figsize=(5 * len(definitions), 3.4))
    axes = list(axes) if len(definitions) > 1 else [axes]
    pruned = data[data["method"] != "dense"]
    for ax, definition in zip(axes, definitions, strict=True):
        rows = pruned if definition is None else pruned[pruned["definition"] == definition]
        sns.pointplot(
            data=rows,
            x="quintile",
            y="survival",
            hue="method",
            hue_order=sorted(set(pruned["method"])),
            errorbar="sd",
            dodge=0.25 if pruned["method"].nunique() > 1 else False,
            palette=_palette(pruned["method"]),
            ax=ax,
            capsize=0.1,
        )
        if definition is not None:
            floor = data[data["definition"] == "seed_floor"]
            floor = floor.groupby("quintile")["survival"].mean()
            if len(floor):
                # pointplot puts quintile q at x = q - 1
                ax.plot(floor.index - 1, floor.to_numpy(), "k:", marker="x", label="seed floor")
                ax.legend(fontsize=6)
            ax.set_title(definition)
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
