"""Study ALIGN's figures: metrics against sparsity (mean ± one standard error over trials)
and heat maps of W1 and C1 = W1 C0 for one trial."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from prunescope.align.results import summarise
from prunescope.figures import save_figure

METHOD_LABELS = {
    "mp": "MP",
    "obd": "OBD",
    "obs": "OBS",
    "mip": "MIP",
    "flo": "FLO",
    "obs_mask": "OBS mask",
    "mip_mask": "MIP mask",
}
METHOD_COLOURS = dict(
    zip(METHOD_LABELS, sns.color_palette("tab10", len(METHOD_LABELS)), strict=True)
)
PRUNING = ["mp", "obd", "obs", "mip", "flo"]
MASK_ONLY = ["mp", "obd", "obs_mask", "mip_mask"]
PATTERNS = ["4P-positive", "3P1N-positive", "2P2N-positive", "1P3N-positive", "4P-negative"]


def _panels(n_rows: int, n_cols: int, width: float = 3.6, height: float = 3.0):
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False
    )
    return fig, axes


def _errorbars(ax, rows: pd.DataFrame, x: str, metric: str, **style) -> None:
    rows = rows.sort_values(x)
    ax.errorbar(rows[x], rows[f"{metric}_mean"], yerr=rows[f"{metric}_se"], capsize=3, **style)


def _method_lines(ax, summary: pd.DataFrame, metric: str, methods, **style) -> None:
    for method in methods:
        rows = summary[summary["method"] == method]
        if len(rows):
            label = style.pop("label", None) or METHOD_LABELS[method]
            _errorbars(
                ax,
                rows,
                "sparsity",
                metric,
                marker="o",
                color=METHOD_COLOURS[method],
                label=label,
                **style,
            )


def _variant_summary(accuracy: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    keys = ["task", "structure", "method", "sparsity", "stage"]
    return summarise(accuracy, keys, [m for m in metrics if m in accuracy.columns])


def _select(frame: pd.DataFrame, **where) -> pd.DataFrame:
    for key, value in where.items():
        frame = frame[frame[key].isin(value if isinstance(value, list) else [value])]
    return frame


def _dnf_tasks(frame: pd.DataFrame) -> list[str]:
    return sorted(
        t
        for t in frame["task"].unique()
        if t != "digits"
        and "4P-positive" in frame
        and frame.loc[frame["task"] == t, "4P-positive"].notna().any()
    )


def accuracy_by_method(accuracy, task_list, structure, methods, title, stage="pruned"):
    """Test accuracy against sparsity, one panel per task, one line per method (Figs. 4, 6, A8)."""
    summary = _variant_summary(accuracy, ["test_accuracy"])
    fig, axes = _panels(1, len(task_list))
    for ax, task in zip(axes[0], task_list, strict=True):
        rows = _select(summary, task=task, structure=structure, stage=stage)
        _method_lines(ax, rows, "test_accuracy", methods)
        ax.set(title=task, xlabel="W1 sparsity per neuron", ylabel="test accuracy")
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fig4(accuracy, training, sweep):
    return accuracy_by_method(
        accuracy,
        _dnf_tasks(accuracy),
        "unstructured",
        PRUNING,
        "Fig. 4: DNF test accuracy after pruning W1, no fine-tuning",
    )


def fig6(accuracy, training, sweep):
    fig = accuracy_by_method(
        accuracy,
        ["digits"],
        "unstructured",
        PRUNING,
        "Fig. 6: Digits test accuracy after pruning W1, no fine-tuning",
    )
    return fig


def figA8(accuracy, training, sweep):
    task_list = sorted(_select(accuracy, structure="2of4")["task"].unique())
    return accuracy_by_method(
        accuracy,
        task_list,
        "2of4",
        PRUNING,
        "Fig. A8: ≥2:4 structured sparsity, test accuracy after pruning",
    )


def fig5(accuracy, training, sweep):
    """Mask-only variants before (dashed) and after (solid) the same fine-tuning budget."""
    summary = _variant_summary(accuracy, ["test_accuracy"])
    task_list = _dnf_tasks(accuracy)
    fig, axes = _panels(1, len(task_list))
    for ax, task in zip(axes[0], task_list, strict=True):
        rows = _select(summary, task=task, structure="unstructured")
        _method_lines(ax, _select(rows, stage="finetuned"), "test_accuracy", MASK_ONLY)
        for method in MASK_ONLY:
            before = _select(rows, stage="pruned", method=method)
            if len(before):
                _errorbars(
                    ax,
                    before,
                    "sparsity",
                    "test_accuracy",
                    linestyle="--",
                    marker=".",
                    alpha=0.6,
                    color=METHOD_COLOURS[method],
                )
        ax.set(title=task, xlabel="W1 sparsity per neuron", ylabel="test accuracy")
    axes[0][0].legend(title="solid: fine-tuned\ndashed: mask only")
    fig.suptitle("Fig. 5: masks with dense weights, before and after fine-tuning")
    fig.tight_layout()
    return fig


def figA3(accuracy, training, sweep):
    """Relative divergence of W1 and of C1 from the dense net after pruning."""
    summary = _variant_summary(accuracy, ["w1_divergence", "c1_divergence"])
    task_list = sorted(summary["task"].unique())
    fig, axes = _panels(2, len(task_list))
    for col, task in enumerate(task_list):
        rows = _select(summary, task=task, structure="unstructured", stage="pruned")
        for row, (metric, name) in enumerate([("w1_divergence", "W1"), ("c1_divergence", "C1")]):
            ax = axes[row][col]
            _method_lines(ax, rows, metric, PRUNING)
            ax.set(
                title=task, xlabel="W1 sparsity per neuron", ylabel=f"‖{name}′ − {name}‖ / ‖{name}‖"
            )
    axes[0][0].legend()
    fig.suptitle("Fig. A3: divergence from the dense net in weight space and in feature space")
    fig.tight_layout()
    return fig


def figA7(accuracy, training, sweep):
    """4P-positive codes left in C1 after pruning, per method."""
    summary = _variant_summary(accuracy, ["4P-positive"])
    task_list = _dnf_tasks(accuracy)
    dense = _dense_codes(training)
    fig, axes = _panels(1, len(task_list))
    for ax, task in zip(axes[0], task_list, strict=True):
        rows = _select(summary, task=task, structure="unstructured", stage="pruned")
        _method_lines(ax, rows, "4P-positive", PRUNING)
        if task in dense.index:
            ax.axhline(dense[task], color="grey", linestyle=":", label="dense")
        ax.set(title=task, xlabel="W1 sparsity per neuron", ylabel="4P-positive codes")
    axes[0][0].legend()
    fig.suptitle("Fig. A7: 4P-positive codes kept by each method (no fine-tuning)")
    fig.tight_layout()
    return fig


def _dense_codes(training: pd.DataFrame) -> pd.Series:
    if "4P-positive" not in training.columns:
        return pd.Series(dtype=float)
    last = training[training["epoch"] == training.groupby("task")["epoch"].transform("max")]
    return last.groupby("task")["4P-positive"].mean()


def figA6(accuracy, training, sweep):
    """Codes present after pruning that survive fine-tuning, and codes fine-tuning creates."""
    tuned = _select(accuracy, stage="finetuned", structure="unstructured")
    tuned = tuned[tuned["method"].isin(PRUNING)].copy()
    tuned["kept_fraction"] = tuned["codes_kept"] / tuned["codes_before"].where(
        tuned["codes_before"] > 0
    )
    summary = summarise(tuned, ["task", "method", "sparsity"], ["kept_fraction", "codes_created"])
    task_list = _dnf_tasks(accuracy)
    fig, axes = _panels(2, len(task_list))
    for col, task in enumerate(task_list):
        rows = _select(summary, task=task)
        _method_lines(axes[0][col], rows, "kept_fraction", PRUNING)
        _method_lines(axes[1][col], rows, "codes_created", PRUNING)
        axes[0][col].set(title=task, ylabel="post-pruning codes kept", ylim=(0, 1.05))
        axes[1][col].set(xlabel="W1 sparsity per neuron", ylabel="codes created")
    axes[0][0].legend()
    fig.suptitle("Fig. A6: fine-tuning keeps the codes pruning left and creates few")
    fig.tight_layout()
    return fig


def _pattern_panel(ax, frame: pd.DataFrame, x: str, relative: bool) -> None:
    patterns = [p for p in PATTERNS if p in frame.columns]
    summary = summarise(frame, [x], patterns)
    for pattern in patterns:
        mean, se = summary[f"{pattern}_mean"], summary[f"{pattern}_se"]
        scale = mean.iloc[0] if relative and mean.iloc[0] > 0 else 1.0
        ax.errorbar(
            summary[x],
            mean / scale,
            yerr=se / scale,
            capsize=2,
            marker=".",
            linewidth=2.5 if pattern == "4P-positive" else 1,
            label=pattern,
        )


def _loss_and_codes(rows, x, xlabel, codes_label, relative, title):
    """Training loss above and code prevalence below, over ``x``, one column per DNF task."""
    task_list = _dnf_tasks(rows)
    fig, axes = _panels(2, len(task_list))
    for col, task in enumerate(task_list):
        task_rows = _select(rows, task=task)
        _errorbars(
            axes[0][col],
            summarise(task_rows, [x], ["train_loss"]),
            x,
            "train_loss",
            marker="o",
            color="black",
        )
        axes[0][col].set(title=task, ylabel="training loss")
        _pattern_panel(axes[1][col], task_rows, x, relative=relative)
        axes[1][col].set(xlabel=xlabel, ylabel=codes_label)
    axes[1][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fig2(accuracy, training, sweep):
    """Training loss and code prevalence as magnitude pruning sparsifies W1."""
    return _loss_and_codes(
        sweep,
        "sparsity",
        "W1 sparsity per neuron (MP)",
        "codes / dense codes",
        relative=True,
        title="Fig. 2: loss rises as 4P-positive codes degrade under magnitude pruning",
    )


def figA1(accuracy, training, sweep):
    """Code prevalence and loss over training of the dense nets."""
    return _loss_and_codes(
        training,
        "epoch",
        "epoch",
        "neuron–clause codes",
        relative=False,
        title="Fig. A1: codes emerge as the training loss falls",
    )


FIGURES = {
    "fig2": fig2,
    "fig4": fig4,
    "fig5": fig5,
    "fig6": fig6,
    "figA1": figA1,
    "figA3": figA3,
    "figA6": figA6,
    "figA7": figA7,
    "figA8": figA8,
}


def plot_figure(name: str, accuracy, training, sweep, path) -> None:
    if name not in FIGURES:
        raise ValueError(f"figure {name!r} is unknown: use one of {sorted(FIGURES)}")
    save_figure(FIGURES[name](accuracy, training, sweep), path)


# --- weight pictures of one trial ---------------------------------------------------------------


def clause_order(clauses: np.ndarray | None, width: int) -> np.ndarray:
    """Columns grouped clause by clause (Fig. 1 orders literals by clause)."""
    return np.arange(width) if clauses is None else clauses.reshape(-1)


def neuron_order(w2: np.ndarray) -> np.ndarray:
    """Neurons with positive output margin first, strongest first (as in Fig. 1)."""
    margin = w2[1] - w2[0] if w2.shape[0] == 2 else np.abs(w2).max(axis=0)
    return np.argsort(-margin, kind="stable")


def _heatmap(ax, matrix: np.ndarray, title: str, clause_lines: int | None = None) -> None:
    limit = np.abs(matrix).max() or 1.0
    ax.imshow(
        matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest"
    )
    if clause_lines:
        for x in np.arange(4, matrix.shape[1], 4) - 0.5:
            ax.axvline(x, color="black", linewidth=0.3)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def dense_picture(net: dict, clauses: np.ndarray | None):
    """Fig. 1: C0, W1, b1, W2 and C1 of the dense net, C1's 4P-positive codes outlined."""
    from prunescope.align.codes import four_p_positive

    width = net["W1"].shape[1]
    cols, rows = clause_order(clauses, width), neuron_order(net["W2"])
    c1 = net["W1"] @ net["C0"]
    fig, axes = plt.subplots(
        1, 5, figsize=(15, 3.6), gridspec_kw={"width_ratios": [4, 4, 0.4, 0.8, 4]}
    )
    _heatmap(axes[0], net["C0"][:, cols], "C0 (input literals by clause)")
    _heatmap(axes[1], net["W1"][rows], "W1 (weight space)")
    _heatmap(axes[2], net["b1"][rows, None], "b1")
    _heatmap(axes[3], net["W2"][:, rows].T, "W2ᵀ")
    _heatmap(axes[4], c1[rows][:, cols], "C1 = W1 C0 (feature space)", clause_lines=True)
    if clauses is not None:
        codes = four_p_positive(c1, net["W2"], net["b1"], clauses)[rows]
        for r, c in zip(*np.nonzero(codes), strict=True):
            axes[4].add_patch(
                plt.Rectangle(
                    (4 * c - 0.5, r - 0.5), 4, 1, fill=False, edgecolor="limegreen", linewidth=1.2
                )
            )
    fig.suptitle("Fig. 1: dense net; green boxes are 4P-positive codes in C1")
    fig.tight_layout()
    return fig


def sparsity_picture(
    net: dict, clauses: np.ndarray | None, pruned: list[tuple[float, dict]], title: str
):
    """Figs. 3 and A2: W1′ and C1′ as magnitude pruning sparsifies W1, with ‖C1′−C1‖/‖C1‖."""
    from prunescope.align.prune import relative_divergence

    width = net["W1"].shape[1]
    cols, rows = clause_order(clauses, width), neuron_order(net["W2"])
    c1 = net["W1"] @ net["C0"]
    fig, axes = _panels(2, len(pruned), width=3.2, height=3.0)
    for k, (sparsity, weights) in enumerate(pruned):
        c1_pruned = weights @ net["C0"]
        divergence = relative_divergence(c1_pruned, c1)
        _heatmap(
            axes[0][k],
            weights[rows][:, cols] if clauses is not None else weights[rows],
            f"W1′ at {sparsity:.1%}",
        )
        _heatmap(
            axes[1][k],
            c1_pruned[rows][:, cols],
            f"C1′ (‖C1′−C1‖/‖C1‖ = {divergence:.2f})",
            clause_lines=clauses is not None,
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def method_picture(
    net: dict, clauses: np.ndarray | None, masks: dict[str, np.ndarray], sparsity: float, title: str
):
    """Figs. A4 and A5: the W1 mask each method chooses at one sparsity."""
    width = net["W1"].shape[1]
    cols, rows = clause_order(clauses, width), neuron_order(net["W2"])
    fig, axes = _panels(1, len(masks), width=3.2, height=3.2)
    for ax, (method, mask) in zip(axes[0], masks.items(), strict=True):
        ax.imshow(
            mask[rows][:, cols],
            cmap="Greys",
            vmin=0,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_title(f"{METHOD_LABELS.get(method, method)} mask", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} ({sparsity:.1%} sparsity; black = kept)")
    fig.tight_layout()
    return fig
