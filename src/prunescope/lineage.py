"""What each artifact's content follows, all the way up: the ``upstream`` params.

A job reruns when its own params change. A reader of an artifact also carries the
artifact's lineage among its params, so that an edit upstream reaches it even when the
job that would rewrite the artifact dies: Snakemake deletes a failed job's output with
the record of its params, and does not rerun a job whose output is missing while every
reader of that output is present and up to date.

Each rule names, beside its inputs, the lineages of what it reads (``reads(...)`` in the
rule files); the functions here compute them from the config and the job's wildcards.
"""

from __future__ import annotations

from prunescope.conditions import (
    CALIBRATED,
    FEATURE_AWARE,
    canonical,
    parse_condition,
    parse_method,
)
from prunescope.errors import UserInputError


def perplexity_corpus(config: dict, model: str) -> str:
    return config["perplexity"].get("corpus") or config["models"][model]["corpus"]


def pruning_options(config: dict, model: str, method: str) -> dict:
    """Only the settings the method reads, so editing Wanda's options never reruns magnitude."""
    base, nm = parse_method(method)
    options: dict = {"method": base, "nm": list(nm) if nm else None}
    if base == "wanda":
        options["granularity"] = config["pruning"]["wanda"]["granularity"]
    if base in {"sparsegpt", *FEATURE_AWARE}:
        options.update(config["pruning"]["sparsegpt"])
    if base in FEATURE_AWARE:
        feature = config["pruning"]["feature"]
        options["feature"] = {
            "weighting": feature["weighting"],
            "basis": feature_basis_lineage(config, model),
        }
        if base == "feature_hybrid":
            options["feature"]["hybrid_lambda"] = feature["hybrid_lambda"]
    if base in CALIBRATED:
        options["calibration"] = dict(config["pruning"]["calibration"])
        options["calibration"]["corpus"] = config["models"][model]["corpus"]
    return options


def feature_enabled(config: dict) -> bool:
    """Whether the config asks for feature bases (``pruning.feature``)."""
    return config["pruning"].get("feature") is not None


def feature_blocks(config: dict, model: str) -> list[int]:
    """The blocks whose two sites get a basis SAE: ``pruning.feature.blocks`` (``cached``:
    the blocks that write the model's cached layers), else every block of the model where
    the config alone knows its depth."""
    blocks = config["pruning"]["feature"].get("blocks")
    if blocks == "cached":
        return sorted(set(config["models"][model]["layers"]))
    if blocks:
        return sorted(blocks)
    from prunescope.checks import model_shape

    shape = model_shape(config, model)
    if shape is None or "num_hidden_layers" not in shape:
        raise UserInputError(
            f"pruning.feature.blocks must list the blocks of models.{model} to build feature "
            "bases for: its config.json is not on this machine yet, so its depth is unknown"
        )
    return list(range(int(shape["num_hidden_layers"])))


def basis_sae_settings(config: dict) -> dict:
    """The basis SAEs' settings: ``sae`` (but its seeds) overridden by ``pruning.feature.sae``."""
    settings = {k: v for k, v in config["sae"].items() if k != "seeds"}
    return canonical({**settings, **config["pruning"]["feature"].get("sae", {})})


def feature_basis_lineage(config: dict, model: str) -> dict:
    """What a model's feature bases follow: the dense model and its capture settings, the
    basis SAEs' settings and seed, and which blocks have one."""
    return canonical(
        {
            "blocks": feature_blocks(config, model),
            "seed": config["pruning"]["feature"]["seed"],
            "sae": basis_sae_settings(config),
            "capture": capture_settings(config, model, "dense"),
        }
    )


def corpus_lineage(config: dict, name: str) -> dict:
    """A corpus's settings, with its name."""
    return canonical({"name": name, **config["corpora"][name]})


def dense_lineage(config: dict, model: str) -> dict:
    """The settings a dense model's weights follow (not which layers are cached, nor its grid)."""
    spec = config["models"][model]
    if spec["source"] == "local":
        lineage = {key: spec[key] for key in ("tokenizer", "architecture", "training")}
        lineage["corpus"] = corpus_lineage(config, spec["corpus"])
    else:
        lineage = {key: spec.get(key) for key in ("name", "revision", "dtype")}
    return canonical({"source": spec["source"], **lineage})


def model_lineage(config: dict, model: str, cond: str) -> dict:
    """The settings a dense or pruned checkpoint's weights follow."""
    lineage: dict = {"dense": dense_lineage(config, model)}
    if cond != "dense":
        method, sparsity = parse_condition(cond)
        options = pruning_options(config, model, method)
        lineage["pruning"] = {
            "sparsity": sparsity,
            "options": options,
            "dtype": config["models"][model]["dtype"],
        }
        if "calibration" in options:
            lineage["pruning"]["corpus"] = corpus_lineage(config, options["calibration"]["corpus"])
    return canonical(lineage)


def capture_settings(config: dict, model: str, cond: str) -> dict:
    """What an activation cache's content follows: the capture options, the text and the model."""
    spec = config["models"][model]
    return canonical(
        {
            "activations": config["activations"],
            "corpus": spec["corpus"],
            "dtype": spec["dtype"],
            "upstream": {
                "corpus": corpus_lineage(config, spec["corpus"]),
                "model": model_lineage(config, model, cond),
            },
        }
    )


def upstream(config: dict, reads: dict, wildcards: dict) -> dict:
    """A job's ``upstream`` param: ``{name: lineage(config, wildcards)}`` for each thing the
    rule declares it reads (``reads(name=lineage, ...)`` in the rule files)."""
    return canonical({name: lineage(config, wildcards) for name, lineage in reads.items()})


# --- what a Study LM job reads, from the config and its wildcards ------------------------------
# Activation caches carry their lineage in capture_settings instead.


def checkpoint_read(wildcards: dict) -> str:
    """The condition whose checkpoint a job reads: an ablation's side picks dense or pruned."""
    if wildcards.get("side") == "dense":
        return "dense"
    return wildcards.get("cond", "dense")


def model_corpus(config: dict, wildcards: dict) -> dict:
    """The corpus the model is trained, calibrated, captured and prompted on."""
    return corpus_lineage(config, config["models"][wildcards["model"]]["corpus"])


def tokenizer_settings(config: dict, wildcards: dict) -> dict:
    return config["models"][wildcards["model"]]["tokenizer"]


def dense_checkpoint(config: dict, wildcards: dict) -> dict:
    return model_lineage(config, wildcards["model"], "dense")


def job_checkpoint(config: dict, wildcards: dict) -> dict:
    """The checkpoint the job reads: its condition's, or the side of an ablation."""
    return model_lineage(config, wildcards["model"], checkpoint_read(wildcards))


def perplexity_text(config: dict, wildcards: dict) -> dict:
    return corpus_lineage(config, perplexity_corpus(config, wildcards["model"]))


def feature_bases(config: dict, wildcards: dict) -> dict:
    """The feature bases a distortion job reads."""
    return feature_basis_lineage(config, wildcards["model"])
