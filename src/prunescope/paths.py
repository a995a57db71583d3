"""Where every artifact of both studies lives: one pattern per kind of file.

Each pattern is spelled once, in Snakemake's wildcard syntax. The rule files use the
patterns as their outputs and inputs; the library names one file with :func:`fill`, which
replaces the wildcards it is given and leaves the others for Snakemake
(``fill(SAE_FILE, name="cfg.json", cond="{cond_a}")`` is the pattern of a rule that reads
two SAEs under other wildcard names).
"""

from __future__ import annotations

import re

from prunescope.conditions import format_sparsity

CONFIG_RECORD = "results/config.yaml"
"""The config a run used, as Snakemake read it."""

# --- Study LM: data stages ------------------------------------------------------------------
CORPUS_SPLIT = "results/corpus/{corpus}/{split}.jsonl"
"""One split (train, calib, eval) of a prepared corpus, as JSON lines."""
CORPUS_MANIFEST = "results/corpus/{corpus}/manifest.json"
TOKENIZER = "results/tokenizers/{model}"
MODEL = "results/models/{model}/{cond}"
"""A dense or pruned checkpoint, saved with save_pretrained."""
PERPLEXITY = "results/perplexity/{model}/{cond}.json"
ACTIVATIONS = "results/activations/{model}/{cond}/L{layer}.h5"
"""The fp32 residual-stream cache of one layer under one condition (HDF5)."""
SAE = "results/sae/{model}/{cond}/L{layer}/seed{seed}"
SAE_FILE = SAE + "/{name}"
"""``sae.safetensors``, ``cfg.json`` or ``metrics.json`` of one trained SAE."""
SAELENS = "results/saelens/{model}/{cond}/L{layer}/seed{seed}"
"""An SAE trained here, exported for SAELens: beside (not inside) its SAE folder, which
training must find holding nothing but its own files."""
PRETRAINED_SAE_ROOT = "results/pretrained_sae"
"""Where the imported copies of pretrained SAEs live, each with ``source.json``."""
PRETRAINED_SAE = PRETRAINED_SAE_ROOT + "/{model}/L{layer}"

FEATURE_SITE = "results/feature_basis/{model}/L{layer}.{site}"
"""One stream a block reads (``attn_in``, ``mlp_in``) and what feature-aware pruning
learns from it: the dense model's ``activations.h5``, an SAE per ``seed{seed}`` and the
``basis.safetensors`` of its features as the block's projections see them."""
SITE_ACTIVATIONS = FEATURE_SITE + "/activations.h5"
SITE_SAE_FILE = FEATURE_SITE + "/seed{seed}/{name}"
FEATURE_BASIS = FEATURE_SITE + "/basis.safetensors"
DISTORTION = "results/distortion/{model}/{cond}.csv"
"""Weight-space and feature-space distortion of every pruned matrix of one condition."""

# --- Study LM: analyses ---------------------------------------------------------------------
MATCH = "results/matches/{model}/L{layer}/{cond_a}_seed{seed_a}__{cond_b}_seed{seed_b}.h5"
"""The decoder-cosine match of two SAEs' dictionaries (HDF5)."""
TRANSFER = "results/transfer/{model}/L{layer}/{cond}.json"
"""The dense reference SAE's reconstruction of a condition's activations."""
PRETRAINED_TRANSFER = "results/transfer/{model}/L{layer}/pretrained/{cond}.json"
SURVIVAL = "results/survival/{model}/L{layer}/{cond}.csv"
"""Activation-level survival of the dense reference SAE's features under ``cond``."""
PRETRAINED_SURVIVAL = "results/survival/{model}/L{layer}/pretrained/{cond}.csv"
"""Activation-level survival of the pretrained SAE's features under ``cond``."""
REVERSE_SURVIVAL = "results/survival/{model}/L{layer}/reverse/{cond}_seed{seed}.csv"
"""Each feature of ``cond``'s seed-``seed`` SAE and its best-correlated dense feature."""
TOP_ACTIVATIONS = "results/top_activations/{model}/L{layer}/{cond}.h5"
"""Each dense reference SAE feature's strongest activations (dense and under ``cond``) and
its activations around them, kept by the activation-level survival pass."""
PRETRAINED_TOP_ACTIVATIONS = "results/top_activations/{model}/L{layer}/pretrained/{cond}.h5"
REVERSE_TOP_ACTIVATIONS = "results/top_activations/{model}/L{layer}/reverse/{cond}_seed{seed}.h5"
"""The same for each feature of ``cond``'s seed-``seed`` SAE on ``cond``'s activations."""
FEATURE_PAGES = "results/browser/{model}/L{layer}.html"
FINDINGS = "results/findings.html"
ABLATION = "results/ablation/{model}/L{layer}/{cond}/{side}.json"
"""The KL of ablating robust and fragile features on one side (dense or pruned)."""
TABLE = "results/tables/{name}.csv"
"""A table of the paper (``table3``) or of the workflow (``quintile_survival``)."""
LOGISTIC_SUMMARIES = "results/tables/logistic_fit.txt"
"""The statsmodels summary of every logistic fit, beside its table."""
FIGURE = "results/figures/{name}.png"

# --- Study ALIGN ----------------------------------------------------------------------------
ALIGN_DATASET = "results/align/data/{task}/trial{trial}.npz"
ALIGN_NET_FILE = "results/align/nets/{task}/trial{trial}/{name}"
"""``dense.safetensors``, ``training.csv``, ``hessian.npy`` or ``hessian_inverse.npy``."""
MIP = "results/align/mip/{task}/{structure}/trial{trial}/s{sparsity}.npz"
"""The MIP oracle's solution for one net, pattern and sparsity (see :func:`mip_path`)."""
PRUNED_FILE = "results/align/pruned/{task}/{structure}/trial{trial}/{name}"
"""The pruned or fine-tuned variants of one net (``pruned.safetensors``, ``finetuned.csv``)."""
ALIGN_BASIS = "results/align/basis/{task}/trial{trial}/{estimator}.npz"
"""A feature basis estimated from one net's embedded training inputs alone (``sae``, ``ica``)."""
BASIS_RECOVERY = "results/align/basis/{task}/trial{trial}/{estimator}_recovery.json"
"""How well that basis recovers the columns of the net's C0 (best |cosine| per feature)."""
BASIS_MIP = "results/align/mip/{task}/{structure}/trial{trial}/{estimator}/s{sparsity}.npz"
"""The MIP's solution with an estimated basis in place of C0 (see :func:`basis_mip_path`)."""
SWEEP = "results/align/sweep/{task}/trial{trial}.csv"
"""Accuracy of one dense net magnitude-pruned over a grid of sparsities."""
ALIGN_TABLE = "results/align/tables/{name}.csv"
MIP_SECONDS = "results/benchmarks/align_mip_seconds.csv"
"""Wall-clock seconds of every MIP solve: they vary from machine to machine, so they are
kept out of the tables."""
ALIGN_FIGURE = "results/align/figures/{figure}.png"
ALIGN_PICTURE = "results/align/figures/{task}/{picture}.png"
"""A weight heat map of one task's heat-map trial."""

WILDCARD = re.compile(r"\{(\w+)\}")


def fill(pattern: str, **values) -> str:
    """``pattern`` with the wildcards named in ``values`` replaced, the others left as they are.

    A value that names no wildcard of the pattern is an error, so a misspelt name cannot
    pass unnoticed.
    """
    unknown = set(values) - set(WILDCARD.findall(pattern))
    if unknown:
        raise KeyError(f"{pattern!r} has no wildcard {sorted(unknown)}")
    return WILDCARD.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], pattern)


def match_path(model, layer, cond_a, seed_a, cond_b, seed_b) -> str:
    """The match of SAE ``(cond_a, seed_a)`` against SAE ``(cond_b, seed_b)``."""
    sides = {"cond_a": cond_a, "seed_a": seed_a, "cond_b": cond_b, "seed_b": seed_b}
    return fill(MATCH, model=model, layer=layer, **sides)


def mip_path(task, structure, trial, sparsity) -> str:
    """A MIP solution's file, with the sparsity spelled as in every path."""
    return fill(
        MIP, task=task, structure=structure, trial=trial, sparsity=format_sparsity(sparsity)
    )


def basis_mip_path(task, structure, trial, estimator, sparsity) -> str:
    """The MIP solution with the ``estimator``'s basis, with the sparsity spelled as in every
    path."""
    return fill(
        BASIS_MIP,
        task=task,
        structure=structure,
        trial=trial,
        estimator=estimator,
        sparsity=format_sparsity(sparsity),
    )
