"""The feature-aware workflow jobs, one function per rule of workflow/rules/feature.smk:
each reads the rule's input files, runs its stage and writes its output; the scripts only
hand over Snakemake's paths and params."""

from __future__ import annotations

import logging

import pandas as pd
import torch

from prunescope.activations import open_cache
from prunescope.architectures import feature_sites_of, site_norm, weight_matrix
from prunescope.feature_pruning.basis import (
    WEIGHTINGS,
    BasisFile,
    measure_feature_basis,
    save_basis,
)
from prunescope.feature_pruning.distortion import quadratic_distortion, weight_distortion
from prunescope.feature_pruning.figure import distortion_figure
from prunescope.feature_pruning.norms import input_second_moment
from prunescope.feature_pruning.tables import distortion_ranks, feature_pruning_table
from prunescope.io import write_csv
from prunescope.models import load_causal_lm, prunable_linears
from prunescope.sae import load_sae

log = logging.getLogger("prunescope")


def measure_basis(
    model_dir, sae_dir, cache, out, *, block: int, site: str, capture: dict, dtype, device
):
    """The feature basis of the SAE in ``sae_dir`` (trained on ``site`` of ``block``),
    measured on the eval split of the site's activation ``cache`` (captured with the
    ``capture`` settings)."""
    model, _ = load_causal_lm(model_dir, dtype, device)
    sae = load_sae(sae_dir, next(model.parameters()).device)
    with open_cache(cache, ("eval",), capture) as f:
        basis = measure_feature_basis(model, sae, f["eval"], block=block, site=site)
    save_basis(basis, out, {"sae": str(sae_dir), "cache": str(cache), "model": str(model_dir)})
    log.info(
        "L%d.%s: %d of %d features alive; energy sum %.4g; projections %s",
        block,
        site,
        len(basis.features),
        sae.d_sae,
        float(basis.energy.sum()),
        ", ".join(basis.projections),
    )


DISTORTION_COLUMNS = [
    "matrix",
    "block",
    "site",
    "sparsity",
    "weight_distortion",
    "input_distortion",
    "feature_distortion_uniform",
    "feature_distortion_energy",
    "n_features",
]


def distortion_frame(dense, pruned, bases, input_moments=None) -> pd.DataFrame:
    """Per prunable matrix: its sparsity, weight-space distortion and, where a basis
    serves it, feature-space distortion with uniform and with energy weights, and input
    distortion against the second moment of the dense model's inputs to it
    (``input_moments``, one per basis, in the same order). Each basis's Hessians are built
    once, for all the matrices it serves."""
    moments = input_moments if input_moments is not None else [None] * len(bases)
    pairs = _matrix_pairs(dense, pruned)
    served = {}
    for basis, moment in zip(bases, moments, strict=True):
        hessians = {w: basis.feature_hessian(w) for w in WEIGHTINGS}
        if moment is not None:
            hessians["input"] = moment
        for name in basis.matrices():
            served[name] = {"site": basis.site, "n_features": basis.n_features}
            weight, after = pairs[name]
            for kind, hessian in hessians.items():
                column = "input_distortion" if kind == "input" else f"feature_distortion_{kind}"
                served[name][column] = quadratic_distortion(weight, after, hessian)
    rows = []
    for name, (weight, after) in pairs.items():
        rows.append(
            {
                "matrix": name,
                "block": int(name.split(".")[1]),
                "sparsity": float((after == 0).double().mean()),
                "weight_distortion": weight_distortion(weight, after),
                **served.get(name, {}),
            }
        )
    return pd.DataFrame(rows, columns=DISTORTION_COLUMNS)


def _matrix_pairs(dense, pruned) -> dict:
    """Every prunable matrix of both models, by name, as float64 ``(out, in)`` on the dense
    model's device."""
    after = prunable_linears(pruned)
    pairs = {}
    for name, module in prunable_linears(dense).items():
        weight = weight_matrix(module).double()
        pairs[name] = (weight, weight_matrix(after[name]).double().to(weight.device))
    return pairs


@torch.no_grad()
def measure_distortion(
    dense_dir, pruned_dir, basis_paths, cache_paths, out, *, capture: dict, dtype, device
) -> None:
    """The distortion table of one pruned condition against the dense model; each basis's
    site cache (``cache_paths``, in the order of ``basis_paths``, captured with the
    ``capture`` settings) gives the inputs of the input distortion."""
    dense, _ = load_causal_lm(dense_dir, dtype, device)
    feature_sites_of(dense)  # refuses a model whose projections read no normalised stream
    pruned, _ = load_causal_lm(pruned_dir, dtype, device)
    bases = [BasisFile(path) for path in basis_paths]
    moments = []
    for basis, cache in zip(bases, cache_paths, strict=True):
        with open_cache(cache, ("eval",), capture) as f:
            moments.append(
                input_second_moment(site_norm(dense, basis.block, basis.site), f["eval"])
            )
    frame = distortion_frame(dense, pruned, bases, moments)
    write_csv(out, frame)
    served = frame.dropna(subset=["feature_distortion_energy"])
    log.info(
        "%d matrices, %d with a basis: mean weight distortion %.4f, feature (energy) %.4f",
        len(frame),
        len(served),
        served["weight_distortion"].mean(),
        served["feature_distortion_energy"].mean(),
    )


def feature_pruning_tables(
    distortions: dict,
    perplexity,
    activation_survival,
    decoder_survival,
    activation_quintiles,
    table_path,
    ranks_path,
    figure_path,
    *,
    sae_label: str,
    activation_tau: float,
    decoder_tau: float,
) -> None:
    """The feature-pruning table, the distortion rank correlations and their figure from
    the per-condition distortion files (``{(model, condition): path}``) and the tables of
    perplexity, activation-level survival, decoder survival and activation quintiles."""
    table = feature_pruning_table(
        {key: pd.read_csv(path) for key, path in distortions.items()},
        pd.read_csv(perplexity),
        pd.read_csv(activation_survival),
        pd.read_csv(decoder_survival),
        pd.read_csv(activation_quintiles),
        sae_label=sae_label,
        activation_tau=activation_tau,
        decoder_tau=decoder_tau,
    )
    ranks = distortion_ranks(table)
    write_csv(table_path, table)
    write_csv(ranks_path, ranks)
    distortion_figure(table, ranks, figure_path)
