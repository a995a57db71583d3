"""The config checks the JSON schema cannot express, each one sentence naming the key.

The Snakefile runs them before any job, so a dry-run refuses what the config alone
decides is wrong: an unknown corpus, a layer past the model's depth, an N:M pattern that
does not divide a width, a budget smaller than one unit, a pretrained SAE that is not there.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from prunescope.architectures import family_for, language_model_config, reads_normalised_streams
from prunescope.conditions import (
    CALIBRATED,
    FEATURE_AWARE,
    NAME_PATTERN,
    NAME_RULE,
    TASK_PATTERN,
    TASK_RULE,
    model_grid,
    parse_method,
    pruned_conditions,
)
from prunescope.errors import UserInputError
from prunescope.hub import only_a_path
from prunescope.lineage import feature_blocks, feature_enabled
from prunescope.paths import MODEL, PRETRAINED_SAE_ROOT, fill
from prunescope.plan import pretrained_label, pretrained_source, saelens_exports, trained_sae_label


def check_names(config: dict) -> None:
    """Refuse a model, corpus or task name that cannot be a folder name, before the schema
    does (its message would name a pattern, not the rule)."""
    blocks = [("models", NAME_PATTERN, NAME_RULE), ("corpora", NAME_PATTERN, NAME_RULE)]
    align = config.get("align")
    if isinstance(align, dict) and isinstance(align.get("tasks"), dict):
        blocks.append(("align.tasks", TASK_PATTERN, TASK_RULE))
    for block, pattern, rule in blocks:
        names = align["tasks"] if block == "align.tasks" else config.get(block)
        for name in names if isinstance(names, dict) else ():
            if not re.fullmatch(pattern, str(name)):
                raise UserInputError(
                    f"{block} has {str(name)!r}, which cannot be a name: it becomes a folder "
                    f"name in every path, so use {rule}"
                )


REMOVED_KEYS = {
    ("analysis", "survival_all_seeds"): "decoder survival now always reports every dense x "
    "pruned seed pair (paired_init and cross_seed, beside the dense seed floor)",
}
"""Keys an earlier version read, and why they went: a config that still sets one is told so."""


def check_removed_keys(config: dict) -> None:
    """Refuse a key this version no longer reads with why it went, before the schema (whose
    message would only call it unexpected)."""
    for (*parents, key), why in REMOVED_KEYS.items():
        node = config
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node:
            dotted = ".".join([*parents, key])
            raise UserInputError(f"{dotted} was removed because {why}: delete it from the config")


def check_config(config: dict) -> None:
    """Raise one ``UserInputError`` sentence naming the offending key, before any job runs."""
    corpora = config["corpora"]
    for name, corpus in corpora.items():
        _check_corpus(name, corpus)
    for name, spec in config["models"].items():
        _check_model(config, name, spec)
    ppl = config["perplexity"]
    if ppl.get("corpus") is not None and ppl["corpus"] not in corpora:
        raise UserInputError(f"perplexity.corpus {ppl['corpus']!r} is not a key of corpora")
    if ppl["stride"] >= ppl["window"]:
        raise UserInputError(
            "perplexity.stride must be below perplexity.window: each window starts with BOS, "
            "so it holds window - 1 text tokens"
        )
    _check_grid("pruning.grid", config["pruning"]["grid"])
    for model, spec in config["models"].items():
        if not pruned_conditions(config, model):
            grid_key = f"models.{model}.grid" if spec.get("grid") else "pruning.grid"
            raise UserInputError(
                f"{grid_key} gives {model} no pruned condition: every sparsity is 0 (the dense "
                "model is always built; list a sparsity above 0)"
            )
    _check_feature(config)
    _check_analysis(config)
    _check_token_budgets(config)
    # last: a pretrained SAE's path is checked against the SAE folders the grid writes
    for name, spec in config["models"].items():
        _check_pretrained_saes(config, name, spec)


def _check_corpus(name: str, corpus: dict) -> None:
    key = f"corpora.{name}"
    required = {"textfile": "paths", "hf": "dataset"}.get(corpus["source"])
    if required and required not in corpus:
        raise UserInputError(f"{key} has source {corpus['source']} but no {required!r}")
    total = sum(corpus.get("fractions", {}).values())
    if total > 1 + 1e-9:
        raise UserInputError(f"{key}.fractions add up to {total:g}, more than 1")


def _check_model(config: dict, name: str, spec: dict) -> None:
    key = f"models.{name}"
    if spec["corpus"] not in config["corpora"]:
        raise UserInputError(f"{key}.corpus {spec['corpus']!r} is not a key of corpora")
    if spec.get("grid"):
        _check_grid(f"{key}.grid", spec["grid"])
    shape = model_shape(config, name)
    if shape is not None and spec["source"] == "hf" and "model_type" in shape:
        classes = shape.get("architectures") or [None]
        family_for(str(shape["model_type"]), classes[0], key=f"{key}.name")
    if shape is not None:
        check_model_shape(config, name, shape)
    if spec["source"] == "local":
        positions = spec["architecture"].get("max_position_embeddings", 2048)
        contexts = {
            "activations.context": config["activations"]["context"],
            "perplexity.window": config["perplexity"]["window"],
            f"{key}.training.context": spec["training"]["context"],
            "pruning.calibration.context": config["pruning"]["calibration"]["context"],
            "analysis.ablation.context": config["analysis"]["ablation"]["context"],
        }
        for ctx_key, ctx in contexts.items():
            if ctx > positions:
                raise UserInputError(
                    f"{ctx_key} {ctx} exceeds {key}.architecture.max_position_embeddings"
                )
    else:
        target = spec["name"]
        looks_local = only_a_path(target)
        if looks_local and not Path(target).expanduser().is_dir():
            raise UserInputError(f"{key}.name: model folder {target!r} does not exist")
        if not looks_local and not Path(target).exists() and _hub_offline():
            saved = Path(fill(MODEL, model=name, cond="dense"))
            if _cached_config(spec) is None and not saved.is_dir():
                raise UserInputError(
                    f"{key}.name {target!r} is not in the local Hugging Face cache and "
                    f"HF_HUB_OFFLINE is set, so it cannot be downloaded: run `hf download "
                    f"{target}` where there is network and bring its Hugging Face cache "
                    "(~/.cache/huggingface) here, or unset HF_HUB_OFFLINE"
                )
        if spec.get("dtype") == "float16" and "gemma" in target.lower():
            raise UserInputError(
                f"{key}.dtype float16 is refused for Gemma: its residual stream overflows "
                "float16 at deep layers (use bfloat16 or float32)"
            )
    # last: the model's own layers, depth and folder are what a wrong layer is told against


# LlamaConfig's defaults, for what a local model's architecture block leaves out.
LLAMA_DEFAULTS = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "tie_word_embeddings": False,
}


def model_shape(config: dict, model: str) -> dict | None:
    """The model's config.json (its widths), where the config alone can know it.

    A model trained here: its architecture block. A hub model given as a local folder, one
    already saved under results/, or one in the local Hugging Face cache: that config.json.
    Otherwise (a hub id not yet downloaded) None, and the first job holding the model
    checks it instead.
    """
    spec = config["models"][model]
    if spec["source"] == "local":
        return {**LLAMA_DEFAULTS, **spec["architecture"]}
    candidates = [Path(spec["name"]).expanduser(), Path(fill(MODEL, model=model, cond="dense"))]
    for found in [folder / "config.json" for folder in candidates] + [_cached_config(spec)]:
        if found is not None and found.is_file():
            try:
                raw = json.loads(found.read_text())
            except (OSError, ValueError):
                return None  # the job that loads the folder names the damage
            return language_model_config(raw) if isinstance(raw, dict) else None
    return None


def _hub_offline() -> bool:
    """What huggingface_hub reads: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in {"1", "ON", "YES", "TRUE"}


def _cached_config(spec: dict) -> Path | None:
    """A hub model's config.json in the local Hugging Face cache, without any download."""
    if Path(spec["name"]).expanduser().exists() or only_a_path(spec["name"]):
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec["name"], "config.json", revision=spec.get("revision"))
    return Path(found) if isinstance(found, str) else None


def check_model_shape(config: dict, model: str, shape: dict) -> None:
    """Refuse what the model's widths make impossible: a layer past its depth, heads that do
    not divide it, an N:M pattern whose M does not divide a pruned matrix's input, an SAE
    with more active latents than latents, ablation sets that cannot both fit in it."""
    key = f"models.{model}"
    where = (
        "its architecture" if config["models"][model]["source"] == "local" else "its config.json"
    )
    depth = shape.get("num_hidden_layers")
    for layer in config["models"][model]["layers"]:
        if depth is not None and layer >= depth:
            raise UserInputError(
                f"{key}.layers: layer {layer} is past the model's depth ({depth} layers)"
            )
    width, heads = shape.get("hidden_size"), shape.get("num_attention_heads")
    if width is None or heads is None:
        return
    if config["models"][model]["source"] == "local":
        kv_heads = shape.get("num_key_value_heads") or heads
        if width % heads:
            raise UserInputError(
                f"{key}.architecture: hidden_size {width} is not a multiple of "
                f"num_attention_heads {heads}, so heads cannot split it"
            )
        if heads % kv_heads:
            raise UserInputError(
                f"{key}.architecture: num_attention_heads {heads} is not a multiple of "
                f"num_key_value_heads {kv_heads}"
            )
    head_dim = shape.get("head_dim") or width // heads
    inputs = {
        "hidden_size": width,
        "intermediate_size": shape.get("intermediate_size"),
        "num_attention_heads × head_dim": heads * head_dim,
    }
    for method in model_grid(config, model):
        _, nm = parse_method(method)
        for what, size in inputs.items():
            if nm and size and size % nm[1]:
                grid_key = f"{key}.grid" if config["models"][model].get("grid") else "pruning.grid"
                raise UserInputError(
                    f"{grid_key}.{method}: {nm[0]}:{nm[1]} pruning splits each row's inputs "
                    f"into groups of {nm[1]}, but {what} is {size} in {where}"
                )
    d_sae = config["sae"]["expansion"] * width
    if config["sae"]["k"] > d_sae:
        raise UserInputError(
            f"sae.k {config['sae']['k']} is above d_sae = sae.expansion × d_model = "
            f"{config['sae']['expansion']} × {width} = {d_sae} for {key}"
        )
    n = config["analysis"]["ablation"]["n_features"]
    if 2 * n > d_sae:
        raise UserInputError(
            f"analysis.ablation.n_features {n}: robust and fragile sets of {n} features "
            f"each cannot both fit in the {d_sae} latents of {key}'s SAEs"
        )


def _check_grid(key: str, grid: dict) -> None:
    for method, sparsities in grid.items():
        _, nm = parse_method(method)
        if nm is None:
            continue
        n, m = nm
        if n >= m:
            raise UserInputError(f"{key}.{method}: N:M needs N < M")
        for s in sparsities:
            if abs(s - n / m) > 1e-9:
                raise UserInputError(
                    f"{key}.{method}: an {n}:{m} pattern has sparsity {n / m:g}, not {s:g}"
                )


def _check_feature(config: dict) -> None:
    """A feature method needs ``pruning.feature``; its blocks must exist in every model."""
    for model, spec in config["models"].items():
        grid_key = f"models.{model}.grid" if spec.get("grid") else "pruning.grid"
        methods = [m for m in model_grid(config, model) if parse_method(m)[0] in FEATURE_AWARE]
        if methods and not feature_enabled(config):
            raise UserInputError(
                f"{grid_key} lists {methods[0]}, which prunes by the features of SAEs that "
                "pruning.feature configures: add `feature: {}` under pruning for its defaults"
            )
    if not feature_enabled(config):
        return
    for model in config["models"]:
        blocks = feature_blocks(config, model)
        shape = model_shape(config, model)
        if shape and "model_type" in shape:
            _check_feature_family(model, shape)
        depth = shape.get("num_hidden_layers") if shape else None
        if depth is not None and max(blocks) >= int(depth):
            raise UserInputError(
                f"pruning.feature.blocks lists block {max(blocks)}, but models.{model} has "
                f"{depth} blocks (0 to {int(depth) - 1})"
            )


def _check_feature_family(model: str, shape: dict) -> None:
    """Refuse, before any job, a family whose projections read no normalised stream."""
    family = family_for(str(shape["model_type"]))
    if not reads_normalised_streams(family, shape):
        raise UserInputError(
            f"pruning.feature builds feature bases for every model, but models.{model} "
            f"({family.label}) normalises after its attention and MLP, so its projections "
            "read no normalised stream: run it without pruning.feature"
        )


def _check_pretrained_saes(config: dict, model: str, spec: dict) -> None:
    """Each pretrained SAE is for a cached layer, names a hub SAE or a local path that exists
    (or that a rule writes under results/), and is not named like the SAE trained here."""
    key = f"models.{model}.pretrained_saes"
    for layer, entry in (spec.get("pretrained_saes") or {}).items():
        entry_key = f"{key}.{layer}"
        if not re.fullmatch(r"\d+", str(layer)) or int(layer) not in spec["layers"]:
            raise UserInputError(
                f"{key} has layer {layer!r}, which is not in models.{model}.layers "
                f"{spec['layers']}: a pretrained SAE is read on the cached activations of its layer"
            )
        if isinstance(entry, dict) and entry.get("revision") and not entry.get("repo"):
            raise UserInputError(
                f"{entry_key}.revision is set without a repo: a local SAE has none"
            )
        source = pretrained_source(entry)
        if isinstance(source, str):
            _check_local_sae(config, entry_key, source)
        if pretrained_label(entry) == trained_sae_label(config):
            raise UserInputError(
                f"{entry_key} is labelled {pretrained_label(entry)!r}, the name the tables "
                "give the SAE trained here; give it a label of its own"
            )


def _check_local_sae(config: dict, entry_key: str, source: str) -> None:
    """A local SAE exists, or is a folder this run writes (one of its SAELens exports);
    never the imported copy itself, which its own import would then have to read."""
    path = Path(source).expanduser()
    if path.is_relative_to(PRETRAINED_SAE_ROOT):
        raise UserInputError(
            f"{entry_key}: SAE path {source!r} is inside {PRETRAINED_SAE_ROOT}/, where the "
            "workflow keeps its own copies of pretrained SAEs; name the original instead"
        )
    if path.exists() or path in {Path(folder) for folder in saelens_exports(config)}:
        return
    if path.parts[:1] == ("results",):
        why = (
            ", and this run writes no SAE folder there (the ones it writes are its SAELens "
            "exports, results/saelens/<model>/<condition>/L<layer>/seed<seed>)"
        )
    else:
        why = " (for a hub SAE write {repo: <owner/name>, path: <folder or weights file>})"
    raise UserInputError(f"{entry_key}: SAE path {source!r} does not exist{why}")


def _check_token_budgets(config: dict) -> None:
    """Each budget must hold at least one of the units it is cut into, or the job that
    reads it would start on no data at all."""
    activations, sae = config["activations"], config["sae"]
    budgets = [
        (
            "activations.train_tokens",
            activations["train_tokens"],
            "sae.batch_size",
            sae["batch_size"],
        ),
        (
            "activations.train_tokens",
            activations["train_tokens"],
            "activations.context",
            activations["context"],
        ),
        (
            "activations.eval_tokens",
            activations["eval_tokens"],
            "activations.context",
            activations["context"],
        ),
        (
            "perplexity.max_tokens",
            config["perplexity"]["max_tokens"],
            "perplexity.window",
            config["perplexity"]["window"],
        ),
        (
            "pruning.calibration.n_tokens",
            config["pruning"]["calibration"]["n_tokens"],
            "pruning.calibration.context",
            config["pruning"]["calibration"]["context"],
        ),
    ]
    for name, spec in config["models"].items():
        if spec["source"] == "local":
            training = spec["training"]
            for budget in ("train_tokens", "eval_tokens"):
                budgets.append(
                    (
                        f"models.{name}.training.{budget}",
                        training[budget],
                        f"models.{name}.training.context",
                        training["context"],
                    )
                )
    for key, tokens, unit_key, unit in budgets:
        if tokens is not None and tokens < unit:  # None: no cap
            raise UserInputError(f"{key} {tokens} is less than one {unit_key} ({unit})")
    for name, spec in config["models"].items():
        _check_splits(config, name, spec)


def _check_splits(config: dict, model: str, spec: dict) -> None:
    """The corpus splits a model reads must be given some of the documents."""
    fractions = config["corpora"][spec["corpus"]].get("fractions", {})
    needed = {"train", "eval"}
    if any(parse_method(m)[0] in CALIBRATED for m in model_grid(config, model)):
        needed.add("calib")
    for split in sorted(needed):
        if fractions.get(split, 0) <= 0:
            raise UserInputError(
                f"corpora.{spec['corpus']}.fractions.{split} is 0, but models.{model} reads its "
                f"{split} split"
            )


def _check_analysis(config: dict) -> None:
    analysis = config["analysis"]
    if len(config["sae"]["seeds"]) < 2:
        raise UserInputError(
            "sae.seeds needs at least two seeds: seed stability (RQ1) and the dense seed "
            "floor compare SAEs of different seeds"
        )
    taus = analysis["taus"]
    for key in ("primary_tau",):
        if analysis[key] not in taus:
            raise UserInputError(f"analysis.{key} {analysis[key]} is not one of analysis.taus")
    if analysis["primary_correlation_tau"] not in analysis["correlation_taus"]:
        raise UserInputError(
            f"analysis.primary_correlation_tau {analysis['primary_correlation_tau']} is not "
            "one of analysis.correlation_taus"
        )
    for tau in analysis["logistic_taus"]:
        if tau not in taus:
            raise UserInputError(f"analysis.logistic_taus: {tau} is not one of analysis.taus")
    if analysis["reference_seed"] not in config["sae"]["seeds"]:
        raise UserInputError(
            f"analysis.reference_seed {analysis['reference_seed']} is not in sae.seeds"
        )
    for model, cond in analysis["ablation"].get("conditions", {}).items():
        if model not in config["models"]:
            raise UserInputError(f"analysis.ablation.conditions: {model!r} is not a key of models")
        if cond not in pruned_conditions(config, model):
            raise UserInputError(
                f"analysis.ablation.conditions.{model}: {cond!r} is not a pruned condition of "
                "that model's grid"
            )
