"""A feature basis: an SAE's alive features as the projections of one block see them.

An SAE trained on the stream entering a block's attention or MLP norm (a *site*) writes
feature ``i`` with code ``a_i`` as ``a_i * std * W_dec[i]`` in the stream (its decoder row
de-normalised). Through the norm, the projections reading that site see
``(a_i / scale(x)) * u_i`` with ``u_i = seen(std * W_dec[i])`` (:mod:`.norms`). The basis
keeps, per feature that fired on the cache's eval split, ``u_i``, its *energy*
``E[(a_i / scale(x))^2]`` over those tokens (how much of the projection's input it carries)
and its firing rate.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm import tqdm

from prunescope.activations import require_finite_rows
from prunescope.architectures import feature_sites_of, site_norm
from prunescope.artifacts import damaged, read_safetensors, read_safetensors_header
from prunescope.feature_pruning.hessian import feature_hessian
from prunescope.feature_pruning.norms import check_norm_map, seen_directions, token_scales
from prunescope.io import atomic_path
from prunescope.sae.model import TopKSAE

WEIGHTINGS = ("energy", "uniform")
"""How features count in the feature Hessian and distortion: by the energy they carry into
the projection, or each alive feature alike (rare ones as much as frequent ones)."""


def matrix_names(block: int, projections) -> list[str]:
    """``layers.{block}.{projection}``: how ``prunable_linears`` names each matrix."""
    return [f"layers.{block}.{name}" for name in projections]


@dataclass
class FeatureBasis:
    """The alive features of one site, as its projections see them (float64)."""

    directions: Tensor
    """``[n_alive, d_model]``: ``u_i`` per alive feature."""
    energy: Tensor
    """``[n_alive]``: mean of ``(a_i / scale(x))^2`` over the eval tokens."""
    firing_rate: Tensor
    features: Tensor
    """``[n_alive]``: each row's feature index in the SAE."""
    block: int
    site: str
    projections: tuple[str, ...]
    """The block's projections that read this site, by their name inside the block."""

    def weights(self, weighting: str) -> Tensor:
        """Each feature's weight in the Hessian: its energy, or 1 (``uniform``; the
        direction keeps its length as seen, so a feature the norm's gain amplifies still
        counts more than one it damps)."""
        if weighting == "energy":
            return self.energy
        if weighting == "uniform":
            return torch.ones_like(self.energy)
        raise ValueError(f"feature weighting {weighting!r} is not one of {list(WEIGHTINGS)}")

    def matrices(self) -> list[str]:
        """The qualified names (``layers.{block}.{projection}``) of the matrices it serves."""
        return matrix_names(self.block, self.projections)

    @property
    def n_features(self) -> int:
        return int(self.directions.shape[0])

    def feature_hessian(self, weighting: str) -> Tensor:
        """``H_F`` of this basis, features counted by ``weighting``."""
        return feature_hessian(self.directions, self.weights(weighting))


@torch.no_grad()
def measure_feature_basis(
    model: nn.Module, sae: TopKSAE, rows, *, block: int, site: str, batch_size: int = 4096
) -> FeatureBasis:
    """The basis of ``sae`` (trained on stream ``site`` of block ``block``) from ``rows`` of
    that stream (an array-like ``[n, d_model]``, e.g. a cache's eval split)."""
    norm = site_norm(model, block, site)
    device = sae.W_dec.device
    n_rows = rows.shape[0]
    where = f"block {block} {site} of {type(model).__name__}"
    if n_rows == 0:
        raise ValueError(f"no activation rows to measure the feature basis of {where} on")
    energy = torch.zeros(sae.d_sae, dtype=torch.float64, device=device)
    fired = torch.zeros_like(energy)
    starts = range(0, n_rows, batch_size)
    for start in tqdm(starts, desc=f"basis L{block}.{site}", file=sys.stderr, mininterval=10):
        x = torch.as_tensor(np.asarray(rows[start : start + batch_size])).to(device, torch.float32)
        require_finite_rows(x, start, where)
        if start == 0:
            check_norm_map(norm, x, where)
        values, indices = sae.encode(x)
        scaled = values.double() / token_scales(norm, x).unsqueeze(-1)
        energy.index_add_(0, indices.flatten(), scaled.pow(2).flatten())
        fired.index_add_(0, indices.flatten(), (values > 0).flatten().double())
    alive = torch.nonzero(fired > 0).flatten()
    if len(alive) == 0:
        raise ValueError(f"no feature of the SAE for {where} fired on its {n_rows} rows")
    stream_directions = sae.W_dec.double()[alive] * sae.std.double().to(device)
    return FeatureBasis(
        directions=seen_directions(norm, stream_directions).cpu(),
        energy=(energy[alive] / n_rows).cpu(),
        firing_rate=(fired[alive] / n_rows).cpu(),
        features=alive.cpu(),
        block=block,
        site=site,
        projections=feature_sites_of(model)[site].projections,
    )


BASIS_TENSORS = ("directions", "energy", "firing_rate", "features")


def save_basis(basis: FeatureBasis, path, provenance: dict | None = None) -> None:
    """Write the basis as one safetensors file (its block, site and projections in the
    metadata), atomically."""
    tensors = {name: getattr(basis, name).contiguous() for name in BASIS_TENSORS}
    metadata = {
        "block": str(basis.block),
        "site": basis.site,
        "projections": json.dumps(list(basis.projections)),
        "provenance": json.dumps(provenance or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


BASIS_FILE = "feature basis file"


def load_basis(path) -> FeatureBasis:
    """A basis written by :func:`save_basis`; anything else is refused naming the file."""
    tensors, metadata = read_safetensors(path, BASIS_FILE)
    try:
        n_alive = tensors["directions"].shape[0]
        if any(tensors[name].shape[0] != n_alive for name in BASIS_TENSORS):
            raise ValueError("its tensors disagree on the number of features")
        return FeatureBasis(
            **{name: tensors[name] for name in BASIS_TENSORS}, **_placement(metadata)
        )
    except (KeyError, TypeError, ValueError) as err:
        raise damaged(BASIS_FILE, path, f"is not a feature basis ({err})") from err


def _placement(metadata: dict) -> dict:
    return {
        "block": int(metadata["block"]),
        "site": metadata["site"],
        "projections": tuple(json.loads(metadata["projections"])),
    }


class BasisFile:
    """A basis on disk that reads its tensors only when its Hessian is asked for, so a
    model's many bases are never all in memory at once (pruning goes block by block)."""

    def __init__(self, path):
        self.path = path
        shapes, metadata = read_safetensors_header(path, BASIS_FILE)
        try:
            placement = _placement(metadata)
            self.n_features = int(shapes["directions"][0])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise damaged(BASIS_FILE, path, f"is not a feature basis ({err})") from err
        self.block, self.site = placement["block"], placement["site"]
        self.projections = placement["projections"]

    def matrices(self) -> list[str]:
        return matrix_names(self.block, self.projections)

    def feature_hessian(self, weighting: str) -> Tensor:
        return load_basis(self.path).feature_hessian(weighting)
