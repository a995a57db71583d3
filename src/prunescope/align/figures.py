"""Study ALIGN's figures over every trial: accuracy, divergence, codes and loss against
sparsity or training epoch (mean ± one standard error over trials).

Each figure is a function named by what it draws; :data:`FIGURES` maps the paper's figure
ids (the output file names) to them. The heat maps of one trial are in :mod:`pictures`."""

from __future__ import annotations

import matplotlib.pyplot as plt
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


def panel_grid(n_rows: int, n_cols: int, width: float = 3.6, height: float = 3.0):
    """A figure of ``n_rows`` x ``n_cols`` axes, ``width`` x ``height`` inches each."""
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
    fig, axes = panel_grid(1, len(task_list))
    for ax, task in zip(axes[0], task_list, strict=True):
        rows = _select(summary, task=task, structure=structure, stage=stage)
        _method_lines(ax, rows, "test_accuracy", methods)
        ax.set(title=task, xlabel="W1 sparsity per neuron", ylabel="test accuracy")
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def dnf_accuracy_after_pruning(accuracy, training, sweep):
    """Every DNF task's test accuracy after pruning W1, no fine-tuning (Fig. 4)."""
    title = "Fig. 4: DNF test accuracy after pruning W1, no fine-tuning"
    return accuracy_by_method(accuracy, _dnf_tasks(accuracy), "unstructured", PRUNING, title)


def digits_accuracy_after_pruning(accuracy, training, sweep):
    """Digits' test accuracy after pruning W1, no fine-tuning (Fig. 6)."""
    title = "Fig. 6: Digits test accuracy after pruning W1, no fine-tuning"
    return accuracy_by_method(accuracy, ["digits"], "unstructured", PRUNING, title)


def structured_accuracy_after_pruning(accuracy, training, sweep):
    """Test accuracy after pruning W1 under ≥2:4 structured sparsity (Fig. A8)."""
    task_list = sorted(_select(accuracy, structure="2of4")["task"].unique())
    title = "Fig. A8: ≥2:4 structured sparsity, test accuracy after pruning"
    return accuracy_by_method(accuracy, task_list, "2of4", PRUNING, title)


def masks_before_and_after_finetuning(accuracy, training, sweep):
    """Mask-only variants before (dashed) and after (solid) the same fine-tuning budget (Fig. 5)."""
    summary = _variant_summary(accuracy, ["test_accuracy"])
    task_list = _dnf_tasks(accuracy)
    fig, axes = panel_grid(1, len(task_list))
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


def divergence_after_pruning(accuracy, training, sweep):
    """Relative divergence of W1 and of C1 from the dense net after pruning (Fig. A3)."""
    summary = _variant_summary(accuracy, ["w1_divergence", "c1_divergence"])
    task_list = sorted(summary["task"].unique())
    fig, axes = panel_grid(2, len(task_list))
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


def codes_after_pruning(accuracy, training, sweep):
    """4P-positive codes left in C1 after pruning, per method (Fig. A7)."""
    summary = _variant_summary(accuracy, ["4P-positive"])
    task_list = _dnf_tasks(accuracy)
    dense = _dense_codes(training)
    fig, axes = panel_grid(1, len(task_list))
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


def codes_through_finetuning(accuracy, training, sweep):
    """Codes present after pruning that survive fine-tuning, and codes fine-tuning creates
    (Fig. A6)."""
    tuned = _select(accuracy, stage="finetuned", structure="unstructured")
    tuned = tuned[tuned["method"].isin(PRUNING)].copy()
    tuned["kept_fraction"] = tuned["codes_kept"] / tuned["codes_before"].where(
        tuned["codes_before"] > 0
    )
    summary = summarise(tuned, ["task", "method", "sparsity"], ["kept_fraction", "codes_created"])
    task_list = _dnf_tasks(accuracy)
    fig, axes = panel_grid(2, len(task_list))
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
    fig, axes = panel_grid(2, len(task_list))
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


def codes_under_magnitude_pruning(accuracy, training, sweep):
    """Training loss and code prevalence as magnitude pruning sparsifies W1 (Fig. 2)."""
    title = "Fig. 2: loss rises as 4P-positive codes degrade under magnitude pruning"
    labels = {"xlabel": "W1 sparsity per neuron (MP)", "codes_label": "codes / dense codes"}
    return _loss_and_codes(sweep, "sparsity", **labels, relative=True, title=title)


def codes_during_training(accuracy, training, sweep):
    """Code prevalence and loss over training of the dense nets (Fig. A1)."""
    title = "Fig. A1: codes emerge as the training loss falls"
    labels = {"xlabel": "epoch", "codes_label": "neuron–clause codes"}
    return _loss_and_codes(training, "epoch", **labels, relative=False, title=title)


# the paper's figure id (the output file's name) -> what draws it
FIGURES = {
    "fig2": codes_under_magnitude_pruning,
    "fig4": dnf_accuracy_after_pruning,
    "fig5": masks_before_and_after_finetuning,
    "fig6": digits_accuracy_after_pruning,
    "figA1": codes_during_training,
    "figA3": divergence_after_pruning,
    "figA6": codes_through_finetuning,
    "figA7": codes_after_pruning,
    "figA8": structured_accuracy_after_pruning,
}


def plot_figure(name: str, accuracy, training, sweep, path) -> None:
    """Draw the paper's figure ``name`` from the study's three tables and save it to ``path``."""
    if name not in FIGURES:
        raise ValueError(f"figure {name!r} is unknown: use one of {sorted(FIGURES)}")
    save_figure(FIGURES[name](accuracy, training, sweep), path)
