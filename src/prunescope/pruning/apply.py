"""``prune_model``: check the arguments, prune every decoder-block linear in place, report.

Magnitude pruning needs only the weights; Wanda, SparseGPT and the feature-aware methods
prune layer by layer from calibration inputs
(:func:`~prunescope.pruning.layerwise.prune_layerwise`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from prunescope.architectures import input_width, weight_matrix
from prunescope.errors import UserInputError
from prunescope.feature_pruning.basis import BasisFile, FeatureBasis
from prunescope.models import prunable_linears
from prunescope.pruning.feature import FEATURE_METHODS, FeatureHessians
from prunescope.pruning.layerwise import Collector, ColumnSquares, prune_layerwise
from prunescope.pruning.masks import (
    magnitude_mask_global,
    magnitudes,
    matrix_mask,
    nm_mask,
    row_mask,
    wanda_scores,
)
from prunescope.pruning.sparsegpt import SparseGPT

METHODS = ("magnitude", "wanda", "sparsegpt", *FEATURE_METHODS)
GRANULARITIES = ("row", "matrix")
PruneLinear = Callable[[str, nn.Module, Collector], None]
"""Prunes one named linear from the collector that gathered its calibration inputs."""


def prune_model(
    model: nn.Module,
    method: str,
    sparsity: float,
    calibration_ids: Tensor | None,
    *,
    granularity: str = "row",
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    batch_size: int = 8,
    device: torch.device | None = None,
    feature_bases: list[FeatureBasis | BasisFile] | None = None,
    weighting: str = "energy",
    hybrid_lambda: float = 1.0,
) -> dict:
    """Prune every linear in the decoder blocks in place and report the result.

    ``magnitude`` uses one global threshold (or, with ``nm``, drops the n
    smallest ``|w|`` of every m); ``wanda`` compares ``|W| * ||X||`` per row
    (``granularity="row"``), per matrix, or per N:M group; ``sparsegpt``
    reconstructs each layer with OBS updates. ``feature`` does the same with the feature
    Hessian of ``feature_bases`` (features counted by ``weighting``) in place of the
    calibration Hessian, and ``feature_hybrid`` with both (``hybrid_lambda`` the feature
    share); a matrix no basis serves falls back to SparseGPT, and the report's
    ``hessians`` says which Hessian pruned each matrix. Calibration inputs for every
    method but magnitude are gathered layer by layer through the already-pruned layers.
    ``device`` is where calibration runs (the model is moved there); None
    keeps the model's own device. The report's ``granularity`` names the
    comparison group actually used.
    """
    _check_arguments(
        model, method, sparsity, calibration_ids, granularity, nm, batch_size, feature_bases
    )
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    nm = tuple(nm) if nm is not None else None
    hessians = FeatureHessians(method, feature_bases or [], weighting, hybrid_lambda)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if method == "magnitude":
                group = _prune_magnitude(model, sparsity, nm)
            else:
                if method == "wanda":
                    pruner = _wanda(sparsity, granularity, nm)
                else:
                    hessians.check_matrices(prunable_linears(model))
                    pruner = _sparsegpt(sparsity, nm, blocksize, percdamp, hessians)
                prune_layerwise(
                    model, calibration_ids, *pruner, batch_size=batch_size, device=device
                )
                group = "n:m" if nm is not None else {"wanda": granularity}.get(method, "block")
    finally:
        model.train(was_training)
    overall, per_matrix = measure_sparsity(model)
    uses_calibration = method != "magnitude"
    feature_report = hessians.report() if method in FEATURE_METHODS else {}
    return {
        "method": method,
        "sparsity_requested": sparsity,
        "granularity": group,
        "nm": list(nm) if nm is not None else None,
        "overall_sparsity": overall,
        "per_matrix": per_matrix,
        "n_calibration_windows": int(calibration_ids.shape[0]) if uses_calibration else None,
        "calibration_context": int(calibration_ids.shape[1]) if uses_calibration else None,
        **feature_report,
    }


def measure_sparsity(model: nn.Module) -> tuple[float, dict[str, dict]]:
    """Fraction of exact zeros over all prunable linears, and per matrix."""
    per_matrix = {}
    zeros_total = numel_total = 0
    for name, module in prunable_linears(model).items():
        weight = weight_matrix(module)
        zeros = int((weight == 0).sum())
        numel = weight.numel()
        per_matrix[name] = {
            "shape": list(weight.shape),  # (out, in), also for a Conv1D stored (in, out)
            "sparsity": zeros / numel,
            "zeros": zeros,
            "numel": numel,
        }
        zeros_total += zeros
        numel_total += numel
    return (zeros_total / numel_total if numel_total else 0.0), per_matrix


def _check_arguments(
    model, method, sparsity, calibration_ids, granularity, nm, batch_size, feature_bases
):
    if method not in METHODS:
        raise ValueError(f"pruning method {method!r} is not one of {list(METHODS)}")
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity {sparsity} is outside [0, 1)")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r} is not one of {list(GRANULARITIES)}")
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} must be at least 1")
    if nm is not None:
        _check_nm(model, nm, sparsity)
    if method != "magnitude":
        _check_calibration(model, method, calibration_ids)
    if method in FEATURE_METHODS and not feature_bases:
        raise ValueError(f"method {method!r} needs feature_bases, got none")


def _check_nm(model: nn.Module, nm, sparsity: float) -> None:
    if len(nm) != 2 or not 0 < nm[0] < nm[1]:
        raise ValueError(f"nm {nm!r} must be a pair (n, m) with 0 < n < m")
    if not math.isclose(nm[0] / nm[1], sparsity, abs_tol=1e-9):
        raise ValueError(
            f"nm {nm[0]}:{nm[1]} prunes {nm[0] / nm[1]:g} of the weights but sparsity "
            f"is {sparsity}; pass sparsity = n/m"
        )
    for name, module in prunable_linears(model).items():
        if input_width(module) % nm[1]:
            raise UserInputError(
                f"{nm[0]}:{nm[1]} pruning splits each row's inputs into groups of {nm[1]}, "
                f"but {name} has {input_width(module)} inputs; leave the _{nm[0]}of{nm[1]} "
                "method out of this model's grid"
            )


def _check_calibration(model: nn.Module, method: str, calibration_ids: Tensor | None) -> None:
    if calibration_ids is None:
        raise ValueError(f"method {method!r} needs calibration_ids, got None")
    if calibration_ids.dim() != 2 or calibration_ids.numel() == 0:
        raise ValueError(
            f"calibration_ids must be a non-empty [n_windows, context] tensor, "
            f"got shape {tuple(calibration_ids.shape)}"
        )
    if calibration_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"calibration_ids must hold integer token ids, got {calibration_ids.dtype}"
        )
    vocab = model.get_input_embeddings().num_embeddings
    if int(calibration_ids.min()) < 0 or int(calibration_ids.max()) >= vocab:
        raise ValueError(f"calibration_ids hold token ids outside the vocabulary [0, {vocab})")


def _apply_mask(module: nn.Module, keep: Tensor) -> None:
    """Zero what ``keep`` (``(out, in)``) drops, through the view a Conv1D needs."""
    weight = weight_matrix(module)
    weight.mul_(keep.to(weight.dtype))


def _prune_magnitude(model: nn.Module, sparsity: float, nm: tuple[int, int] | None) -> str:
    linears = list(prunable_linears(model).values())
    if nm is not None:
        for module in linears:
            _apply_mask(module, nm_mask(magnitudes(weight_matrix(module)), *nm))
        return "n:m"
    masks = magnitude_mask_global([weight_matrix(m) for m in linears], sparsity)
    for module, keep in zip(linears, masks, strict=True):
        _apply_mask(module, keep)
    return "global"


def _wanda(sparsity: float, granularity: str, nm) -> tuple[type, PruneLinear]:
    """Wanda's collector and how it prunes one linear from it."""

    def prune_linear(name: str, module: nn.Module, stats: ColumnSquares) -> None:
        scores = wanda_scores(weight_matrix(module), stats.norm())
        if nm is not None:
            keep = nm_mask(scores, *nm)
        elif granularity == "row":
            keep = row_mask(scores, sparsity)
        else:
            keep = matrix_mask(scores, sparsity)
        _apply_mask(module, keep)

    return ColumnSquares, prune_linear


def _sparsegpt(
    sparsity: float, nm, blocksize: int, percdamp: float, hessians: FeatureHessians
) -> tuple[type, PruneLinear]:
    """SparseGPT's collector and how it prunes one linear from it, with the Hessian
    ``hessians`` chooses for it (the calibration Hessian for plain SparseGPT)."""

    def prune_linear(name: str, module: nn.Module, gpt: SparseGPT) -> None:
        gpt.use_hessian(hessians.for_matrix(name, gpt.H))
        try:
            gpt.prune(sparsity, blocksize=blocksize, percdamp=percdamp, nm=nm)
        except RuntimeError as err:
            raise RuntimeError(f"{name}: {err}") from err

    return SparseGPT, prune_linear
