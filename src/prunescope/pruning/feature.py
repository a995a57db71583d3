"""Which Hessian SparseGPT prunes each matrix with, for the feature-aware methods.

``feature`` replaces the calibration Hessian ``H_X`` of every matrix that reads a site
with a feature basis by that basis's feature Hessian ``H_F``; ``feature_hybrid`` uses
``H_X / tr(H_X) + lambda * H_F / tr(H_F)``. Every other matrix (the attention output and
MLP down projections, whose inputs no residual-stream SAE describes, and the matrices of
blocks without a basis) keeps ``H_X``: plain SparseGPT. What each matrix got is recorded
for the pruning report.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor

from prunescope.feature_pruning.basis import BasisFile, FeatureBasis
from prunescope.feature_pruning.hessian import hybrid_hessian

FEATURE_METHODS = ("feature", "feature_hybrid")


class FeatureHessians:
    """The Hessian of each matrix by name, and a record of which kind each one got."""

    def __init__(
        self,
        method: str,
        bases: list[FeatureBasis | BasisFile],
        weighting: str,
        hybrid_lambda: float,
    ):
        self.method = method
        self.weighting = weighting
        self.hybrid_lambda = hybrid_lambda
        self.bases = bases if method in FEATURE_METHODS else []
        self.by_matrix: dict[str, FeatureBasis | BasisFile] = {}
        for basis in self.bases:
            for name in basis.matrices():
                if name in self.by_matrix:
                    raise ValueError(f"two feature bases serve {name}: pass one basis per site")
                self.by_matrix[name] = basis
        self.used: dict[str, str] = {}
        # q, k and v (gate and up) share a basis and are pruned one after the other
        self._last: tuple[FeatureBasis | BasisFile | None, Tensor | None] = (None, None)

    def check_matrices(self, names) -> None:
        """Refuse a basis that names a matrix the model does not have."""
        unknown = sorted(set(self.by_matrix) - set(names))
        if unknown:
            raise ValueError(f"feature bases name matrices the model lacks: {unknown}")

    def for_matrix(self, name: str, calibration: Tensor) -> Tensor:
        """The Hessian to prune matrix ``name`` with, given its calibration Hessian."""
        basis = self.by_matrix.get(name)
        if basis is None:
            self.used[name] = "calibration"
            return calibration
        h_f = self._feature_hessian(basis).to(calibration.device)
        if not torch.trace(h_f) > 0:
            raise ValueError(f"{name}: the feature basis of L{basis.block}.{basis.site} is empty")
        if self.method == "feature":
            self.used[name] = "feature"
            return h_f.float()
        self.used[name] = "hybrid"
        return hybrid_hessian(calibration, h_f, self.hybrid_lambda).float()

    def _feature_hessian(self, basis: FeatureBasis | BasisFile) -> Tensor:
        if self._last[0] is not basis:
            self._last = (basis, basis.feature_hessian(self.weighting))
        return self._last[1]

    def report(self) -> dict:
        """What the pruning report records: the Hessian of every matrix and the bases used."""
        settings: dict = {"weighting": self.weighting}
        if self.method == "feature_hybrid":
            settings["hybrid_lambda"] = self.hybrid_lambda
        settings["sites"] = {
            f"L{b.block}.{b.site}": {
                "n_features": b.n_features,
                "matrices": b.matrices(),
            }
            for b in self.bases
        }
        counts = dict(sorted(Counter(self.used.values()).items()))
        return {"hessians": dict(self.used), "hessian_counts": counts, "feature_basis": settings}


def feature_arguments(options: dict | None, basis_paths) -> dict:
    """``prune_model``'s feature keywords from a feature method's pruning options (none for
    the other methods): the bases on disk, read one at a time, and how features count."""
    if options is None:
        return {}
    return {
        "feature_bases": [BasisFile(path) for path in basis_paths],
        "weighting": options["weighting"],
        # plain feature pruning has no lambda; prune_model ignores it then
        "hybrid_lambda": options.get("hybrid_lambda", 0.0),
    }
