"""Study ALIGN's weight pictures of one trial: heat maps of C0, W1 and C1 = W1 C0 of the dense
net (Fig. 1), under magnitude pruning (Figs. 3, A2), and the W1 mask each method chooses
(Figs. A4, A5)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from prunescope.align.codes import four_p_positive
from prunescope.align.data import load_dataset
from prunescope.align.experiment import load_variant_nets, magnitude_pruned, picture_sparsities
from prunescope.align.figures import METHOD_LABELS, panel_grid
from prunescope.align.net import load_nets
from prunescope.align.prune import relative_divergence
from prunescope.figures import save_figure

DENSE_PICTURES = ("fig1",)
MAGNITUDE_PICTURES = ("fig3", "figA2")
METHOD_PICTURES = ("figA4", "figA5")
PICTURED_METHODS = ["mp", "obd", "obs", "mip"]


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
    width = net["W1"].shape[1]
    cols, rows = clause_order(clauses, width), neuron_order(net["W2"])
    c1 = net["W1"] @ net["C0"]
    fig, axes = panel_grid(2, len(pruned), width=3.2, height=3.0)
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
    fig, axes = panel_grid(1, len(masks), width=3.2, height=3.2)
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


def plot_picture(
    picture: str,
    path,
    *,
    net,
    data,
    pruned,
    variants,
    sweep: list[float],
    sparsity: float,
    task: str,
) -> None:
    """Draw the paper's picture ``picture`` of one trial and save it to ``path``: ``net`` and
    ``data`` are the trial's dense net and dataset files, ``pruned`` and ``variants`` its
    pruned variants and their table, ``sweep`` the magnitude sparsities and ``sparsity`` the
    one the method masks are drawn at."""
    dense = load_nets(net).variant(0)
    clauses = load_dataset(data).clauses
    number = f"Fig. {picture[3:]}"
    if picture in DENSE_PICTURES:
        fig = dense_picture(dense, clauses)
    elif picture in MAGNITUDE_PICTURES:
        weights = [(s, magnitude_pruned(dense["W1"], s)) for s in picture_sparsities(sweep)]
        title = f"{number}: {task} under magnitude pruning of W1"
        fig = sparsity_picture(dense, clauses, weights, title)
    elif picture in METHOD_PICTURES:
        by_method = _masks_by_method(pruned, variants, sparsity)
        fig = method_picture(dense, clauses, by_method, sparsity, f"{number}: {task}")
    else:
        known = sorted(DENSE_PICTURES + MAGNITUDE_PICTURES + METHOD_PICTURES)
        raise ValueError(f"picture {picture!r} is unknown: use one of {known}")
    save_figure(fig, path)


def _masks_by_method(pruned, variants, sparsity: float) -> dict[str, np.ndarray]:
    """The W1 mask of each pictured method's variant at ``sparsity``."""
    table = pd.read_csv(variants)
    _, masks = load_variant_nets(pruned)
    chosen = table[(table["sparsity"] == sparsity)]
    chosen = chosen[chosen["method"].isin(PICTURED_METHODS)]
    return {row.method: masks[row.variant] for row in chosen.itertuples()}
