"""Study ALIGN's stages as functions of arrays and files: what each job in :mod:`jobs` runs.

The maths lives in :mod:`data`, :mod:`net`, :mod:`hessian`, :mod:`prune`, :mod:`mip` and
:mod:`codes`; this module strings them together and turns results into table rows.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from prunescope.align.codes import code_counts, code_persistence, four_p_positive
from prunescope.align.data import Dataset
from prunescope.align.methods import split_method
from prunescope.align.net import (
    NETS_FILE,
    AlignNets,
    evaluate_nets,
    nets_from_tensors,
    save_nets,
    train_nets,
)
from prunescope.align.prune import (
    NEEDS_HESSIAN,
    prune_w1,
    relative_divergence,
    select_mask,
)
from prunescope.align.structures import STRUCTURES, keep_count
from prunescope.artifacts import damaged, read_npz, read_safetensors
from prunescope.io import atomic_path

log = logging.getLogger("prunescope")


def net_metrics(nets: AlignNets, data: Dataset, dense: dict | None = None) -> pd.DataFrame:
    """One row per variant: accuracy and loss on both splits, divergence from ``dense``,
    and (for a DNF task) the count of every code pattern in C1 = W1 C0."""
    train_loss, train_acc = evaluate_nets(nets, data.x_train, data.y_train)
    test_loss, test_acc = evaluate_nets(nets, data.x_test, data.y_test)
    frame = pd.DataFrame(
        {
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
        }
    )
    arrays = nets.to_arrays()
    c1 = arrays["W1"] @ arrays["C0"]
    if dense is not None:
        dense_c1 = dense["W1"] @ dense["C0"]
        frame["w1_divergence"] = [relative_divergence(w, dense["W1"]) for w in arrays["W1"]]
        frame["c1_divergence"] = [relative_divergence(c, dense_c1) for c in c1]
    if data.clauses is not None:
        counts = [
            code_counts(c1[v], arrays["W2"][v], arrays["b1"][v], data.clauses)
            for v in range(len(frame))
        ]
        frame = pd.concat([frame, pd.DataFrame(counts)], axis=1)
    return frame


def code_maps(nets: AlignNets, clauses: np.ndarray) -> np.ndarray:
    """The 4P-positive map (variants, neurons, clauses) of every variant."""
    arrays = nets.to_arrays()
    c1 = arrays["W1"] @ arrays["C0"]
    return np.stack(
        [
            four_p_positive(c1[v], arrays["W2"][v], arrays["b1"][v], clauses)
            for v in range(c1.shape[0])
        ]
    )


# --- dense training ---------------------------------------------------------------------------


def train_dense_net(
    data: Dataset, *, epochs: int, lr: float, batch_size: int, seed: int
) -> tuple[AlignNets, pd.DataFrame]:
    """Train one net; the history holds every epoch's metrics and codes (Fig. A1)."""
    nets = AlignNets.initialise(1, data.x_train.shape[1], data.classes, seed)
    history = []

    def record(epoch: int, current: AlignNets) -> None:
        row = net_metrics(current, data).iloc[0].to_dict()
        history.append({"epoch": epoch, **row})
        log.info("epoch %d: test accuracy %.4f", epoch, row["test_accuracy"])

    schedule = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
    train_nets(nets, data.x_train, data.y_train, **schedule, callback=record)
    return nets, pd.DataFrame(history)


# --- pruning ----------------------------------------------------------------------------------


def load_mip_solution(path) -> dict[str, np.ndarray]:
    return read_npz(path, "MIP solution", required=("mask", "weights", "label_sparsity"))


def save_mip_solution(
    path, mask: np.ndarray, weights: np.ndarray, frame: pd.DataFrame, **labels
) -> None:
    """Mask, refitted weights, one record per neuron (status, gap, bound, time) and the
    labels (task, structure, trial, sparsity) that name the solve in the tables."""
    arrays = {"mask": mask, "weights": weights}
    arrays.update({f"label_{key}": np.asarray(value) for key, value in labels.items()})
    for col in frame.columns:  # text columns as fixed-width unicode: no pickles in the file
        values = frame[col].to_numpy()
        arrays[f"neuron_{col}"] = values.astype(str) if values.dtype == object else values
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez(stream, **arrays)


def save_basis(path, basis: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        np.savez(stream, basis=basis)


def load_basis(path) -> np.ndarray:
    return read_npz(path, "ALIGN feature basis", required=("basis",))["basis"]


def mip_frame(solution: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per neuron, with the solve's labels as columns."""
    frame = pd.DataFrame(
        {key[len("neuron_") :]: v for key, v in solution.items() if key.startswith("neuron_")}
    )
    labels = {k[len("label_") :]: v.item() for k, v in solution.items() if k.startswith("label_")}
    return frame.assign(**labels)


def prune_variants(
    dense: dict[str, np.ndarray],
    variant_list: list[tuple[str, float]],
    *,
    structure: str,
    hessian: np.ndarray | None,
    hessian_inverse: np.ndarray | None,
    mip_solutions: dict[float, dict[str, np.ndarray]],
    basis_solutions: dict[str, dict[float, dict[str, np.ndarray]]] | None = None,
) -> tuple[AlignNets, np.ndarray]:
    """Every (method, sparsity) pruned from the dense net, stacked, with their W1 masks.

    ``hessian_inverse`` is the damped inverse from ``prune.damped_inverse``, computed once
    per dense net and shared by both structures. ``mip_solutions`` are the oracle's by
    sparsity; ``basis_solutions`` those of each estimated basis (``mip_sae`` and ``flo_sae``
    prune as MIP and FLO do, from the ``sae`` basis's solutions).
    """
    block = STRUCTURES[structure]
    width = dense["W1"].shape[1]
    methods = {split_method(m)[0] for m, _ in variant_list}
    if methods & NEEDS_HESSIAN and (hessian is None or hessian_inverse is None):
        raise ValueError(
            f"methods {sorted(methods & NEEDS_HESSIAN)} need the W1 Hessian and its inverse"
        )
    pruned, masks = [], []
    for method, sparsity in variant_list:
        base, estimator = split_method(method)
        solutions = mip_solutions if estimator is None else (basis_solutions or {}).get(estimator)
        if solutions is None:
            raise ValueError(f"method {method!r} needs the MIP solutions of the {estimator} basis")
        mip = solutions.get(sparsity, {})
        weights, mask = prune_w1(
            base,
            dense["W1"],
            keep=keep_count(width, sparsity),
            block=block,
            H=hessian,
            H_inv=hessian_inverse,
            mip_mask=mip.get("mask"),
            mip_weights=mip.get("weights"),
        )
        pruned.append({**dense, "W1": weights})
        masks.append(mask)
    return AlignNets.stack(pruned), np.stack(masks)


def save_variant_nets(path, nets: AlignNets, masks: np.ndarray) -> None:
    save_nets(path, nets, extra={"mask": torch.from_numpy(masks.astype(np.uint8))})


def load_variant_nets(path) -> tuple[AlignNets, np.ndarray]:
    tensors, _ = read_safetensors(path, NETS_FILE)
    nets = nets_from_tensors(tensors, path)
    if "mask" not in tensors:
        raise damaged(NETS_FILE, path, "lacks the pruning masks ('mask'), so it is incomplete")
    masks = tensors["mask"]
    if masks.shape != nets.W1.shape:
        raise damaged(
            NETS_FILE,
            path,
            f"has masks of shape {tuple(masks.shape)} for W1 {tuple(nets.W1.shape)}",
        )
    return nets, masks.numpy().astype(bool)


def finetune_variants(
    nets: AlignNets,
    masks: np.ndarray,
    data: Dataset,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> AlignNets:
    """All variants fine-tuned together, each with its W1 mask held fixed."""
    if epochs:
        schedule = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
        train_nets(nets, data.x_train, data.y_train, **schedule, masks=masks)
    return nets


def persistence_frame(before: np.ndarray, after: np.ndarray) -> pd.DataFrame:
    """Per variant: 4P-positive codes kept, lost and created through fine-tuning (Fig. A6)."""
    rows = [code_persistence(b, a) for b, a in zip(before, after, strict=True)]
    return pd.DataFrame(rows).add_prefix("codes_")


# --- magnitude sweep (Fig. 2, 3) ----------------------------------------------------------------


PICTURE_SPARSITIES = (0.5, 0.75, 0.875, 0.9375)


def magnitude_pruned(w1: np.ndarray, sparsity: float) -> np.ndarray:
    """W1 with the smallest weights of every row set to zero."""
    return np.where(select_mask(np.abs(w1), keep_count(w1.shape[1], sparsity)), w1, 0.0)


def picture_sparsities(sweep: list[float]) -> list[float]:
    """The sweep's sparsities drawn in Figs. 3 and A2 (the paper shows 50, 75 and 87.5 %)."""
    chosen = [s for s in sorted(sweep) if s in PICTURE_SPARSITIES]
    return chosen or [s for s in sorted(sweep) if s > 0][-3:]


def magnitude_sweep(
    dense: dict[str, np.ndarray], data: Dataset, sparsities: list[float]
) -> pd.DataFrame:
    """Per-row magnitude pruning of W1 at each sparsity, no fine-tuning."""
    pruned = [{**dense, "W1": magnitude_pruned(dense["W1"], s)} for s in sparsities]
    frame = net_metrics(AlignNets.stack(pruned), data, dense)
    frame.insert(0, "sparsity", sparsities)
    return frame
