"""One-shot pruning of the linear layers inside the decoder blocks of a causal LM.

The rules follow section 3.1 of "How Pruning Reshapes Features": global
magnitude pruning and Wanda (Sun et al. 2024), plus SparseGPT (Frantar &
Alistarh 2023) and the N:M variants of all three. Embeddings and ``lm_head``
are never touched: only :func:`~prunescope.models.prunable_linears` are pruned.

The maths (scores and masks, :mod:`.masks`; the OBS solver, :mod:`.sparsegpt`; which
Hessian the feature-aware methods give it, :mod:`.feature`) are
small pure functions and one class on tensors; the plumbing that gathers calibration
inputs layer by layer, with each layer fed the output of the already-pruned layers
before it, lives in :mod:`.layerwise`; :func:`prune_model` (:mod:`.apply`) checks the
arguments and runs one method over a model. Masks are boolean *keep* masks
(True = weight stays).
"""

from prunescope.pruning.apply import GRANULARITIES, METHODS, measure_sparsity, prune_model
from prunescope.pruning.feature import FEATURE_METHODS, FeatureHessians, feature_arguments
from prunescope.pruning.layerwise import (
    ColumnSquares,
    capture_layer_calls,
    prune_layerwise,
    run_layer,
    wanda_act_norms,
)
from prunescope.pruning.masks import (
    count_to_prune,
    magnitude_mask_global,
    matrix_mask,
    nm_mask,
    row_mask,
    wanda_scores,
)
from prunescope.pruning.sparsegpt import SparseGPT

__all__ = [
    "FEATURE_METHODS",
    "GRANULARITIES",
    "METHODS",
    "ColumnSquares",
    "FeatureHessians",
    "SparseGPT",
    "capture_layer_calls",
    "count_to_prune",
    "feature_arguments",
    "magnitude_mask_global",
    "matrix_mask",
    "measure_sparsity",
    "nm_mask",
    "prune_layerwise",
    "prune_model",
    "row_mask",
    "run_layer",
    "wanda_act_norms",
    "wanda_scores",
]
