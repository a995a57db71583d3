"""The experiment grid as plain data: conditions, artifact paths and config checks.

The Snakemake rule files ask this module what to build; it knows nothing of
Snakemake, so the grid logic is unit-tested like the rest of the library.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from decimal import Decimal
from pathlib import Path

from prunescope.architectures import family_for, language_model_config
from prunescope.errors import UserInputError
from prunescope.hub import only_a_path

# A model, corpus or Study ALIGN task name becomes a folder name in every artifact path. A
# letter or digit first (so never "." or ".."), and no "/" : the schema's propertyNames and
# the rule files' wildcard constraints use these same patterns.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
TASK_PATTERN = r"[a-z][a-z0-9_]*"
NAME_RULE = "a letter or digit first, then only letters, digits, '_', '.' and '-'"
TASK_RULE = "a lower-case letter first, then only lower-case letters, digits and '_'"

METHOD_RE = re.compile(r"^(?P<base>magnitude|wanda|sparsegpt)(?:_(?P<n>\d+)of(?P<m>\d+))?$")
CALIBRATED = {"wanda", "sparsegpt"}


def format_sparsity(sparsity: float) -> str:
    """``0.3`` -> ``"0.3"``: the spelling used in condition names and paths.

    The shortest decimal that reads back as the same float, never in exponent form, so
    that every sparsity has its own name and the rules' ``0.[0-9]+`` pattern matches it.
    """
    text = format(Decimal(repr(float(sparsity))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_method(method: str) -> tuple[str, tuple[int, int] | None]:
    """``wanda_2of4`` -> ``("wanda", (2, 4))``; ``magnitude`` -> ``("magnitude", None)``."""
    match = METHOD_RE.match(method)
    if match is None:
        raise UserInputError(
            f"pruning method {method!r} is unknown: use magnitude, wanda or sparsegpt, "
            "optionally with an N:M suffix such as wanda_2of4"
        )
    nm = (int(match["n"]), int(match["m"])) if match["n"] else None
    return match["base"], nm


def condition_name(method: str, sparsity: float) -> str:
    return f"{method}-{format_sparsity(sparsity)}"


def parse_condition(cond: str) -> tuple[str, float]:
    """``wanda-0.3`` -> ``("wanda", 0.3)``; ``dense`` -> ``("dense", 0.0)``."""
    if cond == "dense":
        return "dense", 0.0
    method, _, sparsity = cond.rpartition("-")
    parse_method(method)
    return method, float(sparsity)


def model_grid(config: dict, model: str) -> dict[str, list[float]]:
    return config["models"][model].get("grid") or config["pruning"]["grid"]


def conditions(config: dict, model: str) -> list[str]:
    """``dense`` followed by every pruned condition of the model's grid."""
    conds = ["dense"]
    for method, sparsities in model_grid(config, model).items():
        conds += [condition_name(method, s) for s in sparsities if s > 0]
    return conds


def models_by_source(config: dict, source: str) -> list[str]:
    return [name for name, m in config["models"].items() if m["source"] == source]


def perplexity_corpus(config: dict, model: str) -> str:
    return config["perplexity"].get("corpus") or config["models"][model]["corpus"]


def pruning_options(config: dict, model: str, method: str) -> dict:
    """Only the settings the method reads, so editing Wanda's options never reruns magnitude."""
    base, nm = parse_method(method)
    options: dict = {"method": base, "nm": list(nm) if nm else None}
    if base == "wanda":
        options["granularity"] = config["pruning"]["wanda"]["granularity"]
    if base == "sparsegpt":
        options.update(config["pruning"]["sparsegpt"])
    if base in CALIBRATED:
        options["calibration"] = dict(config["pruning"]["calibration"])
        options["calibration"]["corpus"] = config["models"][model]["corpus"]
    return options


# --- lineage: what an artifact's content follows, all the way up ------------------------------
#
# A job reruns when its own params change. A reader of an artifact also carries the
# artifact's lineage among its params, so that an edit upstream reaches it even when the
# job that would rewrite the artifact dies: Snakemake deletes a failed job's output with
# the record of its params, and does not rerun a job whose output is missing while every
# reader of that output is present and up to date.


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


def upstream_of(config: dict, rule: str, model: str, cond: str = "dense") -> dict:
    """The lineage of what a Study LM job reads: its ``upstream`` param.

    ``cond`` is the checkpoint the job reads (ablation reads the dense or the pruned one).
    Activation caches carry theirs in :func:`capture_settings`.
    """
    spec = config["models"][model]
    corpus = corpus_lineage(config, spec["corpus"])
    if rule == "train_tokenizer":
        return canonical({"corpus": corpus})
    if rule == "train_local_model":
        return canonical({"corpus": corpus, "tokenizer": spec["tokenizer"]})
    if rule == "prune_model":
        return canonical({"corpus": corpus, "model": model_lineage(config, model, "dense")})
    if rule == "evaluate_perplexity":
        text = corpus_lineage(config, perplexity_corpus(config, model))
        return canonical({"model": model_lineage(config, model, cond), "text": text})
    if rule == "ablate_features":
        return canonical({"model": model_lineage(config, model, cond), "prompts": corpus})
    raise ValueError(f"no upstream lineage is defined for rule {rule!r}")


# --- artifact paths -------------------------------------------------------------------------


def model_dir(model: str, cond: str) -> str:
    return f"results/models/{model}/{cond}"


def perplexity_path(model: str, cond: str) -> str:
    return f"results/perplexity/{model}/{cond}.json"


def sae_dir(model: str, cond: str, layer: int, seed: int) -> str:
    return f"results/sae/{model}/{cond}/L{layer}/seed{seed}"


def saelens_dir(model: str, cond: str, layer: int, seed: int) -> str:
    return f"results/saelens/{model}/{cond}/L{layer}/seed{seed}"


def saelens_export_settings(config: dict, model: str, layer: int | str) -> dict:
    """What SAELens needs to place an exported SAE: the TransformerLens name of the
    residual stream after decoder block ``layer`` and the model's name (its hub id, or the
    name of a model trained here)."""
    spec = config["models"][model]
    return {
        "hook_name": f"blocks.{int(layer)}.hook_resid_post",
        "model_name": spec.get("name") if spec["source"] == "hf" else model,
    }


def saelens_exports(config: dict) -> list[str]:
    """The SAELens copy of every SAE of the grid, beside (not inside) its SAE folder, which
    training must find holding nothing but its own files."""
    return [
        saelens_dir(model, cond, layer, seed)
        for model, spec in config["models"].items()
        for cond in conditions(config, model)
        for layer in spec["layers"]
        for seed in config["sae"]["seeds"]
    ]


def data_stage_targets(config: dict) -> list[str]:
    """Perplexity of every condition and every SAE seed of every cached layer."""
    targets = []
    for model, spec in config["models"].items():
        for cond in conditions(config, model):
            targets.append(perplexity_path(model, cond))
            for layer in spec["layers"]:
                for seed in config["sae"]["seeds"]:
                    targets.append(f"{sae_dir(model, cond, layer, seed)}/metrics.json")
    return targets


# --- semantic checks the JSON schema cannot express -------------------------------------------


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
            if _cached_config(spec) is None and not Path(model_dir(name, "dense")).is_dir():
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
    candidates = [Path(spec["name"]).expanduser(), Path(model_dir(model, "dense"))]
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


# --- analyses (RQ1-RQ5) ---------------------------------------------------------------------


def match_path(model: str, layer: int, cond_a: str, seed_a: int, cond_b: str, seed_b: int) -> str:
    return f"results/matches/{model}/L{layer}/{cond_a}_seed{seed_a}__{cond_b}_seed{seed_b}.h5"


def survival_path(model: str, layer: int, cond: str) -> str:
    """Activation-level survival of the dense reference SAE's features under ``cond``."""
    return f"results/survival/{model}/L{layer}/{cond}.csv"


def reverse_survival_path(model: str, layer: int, cond: str, seed: int) -> str:
    """Each feature of ``cond``'s seed-``seed`` SAE and its best-correlated dense feature."""
    return f"results/survival/{model}/L{layer}/reverse/{cond}_seed{seed}.csv"


def independent_seed(config: dict) -> int:
    """The first SAE seed that is not the reference seed: an SAE whose initial dictionary
    differs from the dense reference SAE's, for the reverse view and its floor."""
    ref = config["analysis"]["reference_seed"]
    return next(s for s in config["sae"]["seeds"] if s != ref)


def ablation_ranking(config: dict, model: str, layer: int, cond: str, side: str) -> str:
    """The file that ranks the features RQ5 ablates (``analysis.ablation.selection``):
    the reference-seed match, or the activation-level survival of that side's SAE."""
    ref = config["analysis"]["reference_seed"]
    if config["analysis"]["ablation"]["selection"] == "decoder":
        return match_path(model, layer, "dense", ref, cond, ref)
    if side == "dense":
        return survival_path(model, layer, cond)
    return reverse_survival_path(model, layer, cond, ref)


# --- SAEs trained elsewhere (models.<m>.pretrained_saes) ----------------------------------------

PRETRAINED_SAE_ROOT = "results/pretrained_sae"
"""Where the imported copies of pretrained SAEs live, each with ``source.json``."""
HUB_SAE_KEYS = ("repo", "path", "revision")


def pretrained_saes(config: dict, model: str) -> dict[int, dict]:
    """Layer -> ``{"source": ..., "label": ...}`` for every SAE trained elsewhere that the
    config gives ``model``: ``source`` is a local path or ``{repo, path[, revision]}`` (what
    ``prunescope.pretrained.resolve_sae_source`` reads), ``label`` its name in the tables."""
    entries = config["models"][model].get("pretrained_saes") or {}
    return {
        int(layer): {"source": pretrained_source(entry), "label": pretrained_label(entry)}
        for layer, entry in entries.items()
    }


def pretrained_source(entry) -> str | dict:
    """A local path (a bare string, or ``path`` without ``repo``) or a hub coordinate."""
    if isinstance(entry, str):
        return entry
    if entry.get("repo"):
        return {key: entry[key] for key in HUB_SAE_KEYS if entry.get(key) is not None}
    return entry["path"]


def pretrained_label(entry) -> str:
    """The SAE's name in every table: ``label`` when given, else its repo and path (hub)
    or its path (local), which name it exactly."""
    if isinstance(entry, dict) and entry.get("label"):
        return entry["label"]
    source = pretrained_source(entry)
    if isinstance(source, str):
        return source
    at = f"@{source['revision']}" if source.get("revision") else ""
    path = source["path"].strip("/")
    return f"{source['repo']}{at}/{path}" if path else f"{source['repo']}{at}"


def trained_sae_label(config: dict) -> str:
    """The name, in the tables beside a pretrained SAE, of the dense SAE trained here."""
    return f"trained here: dense seed {config['analysis']['reference_seed']}"


def pretrained_layers(config: dict) -> list[tuple[str, int]]:
    """Every (model, layer) with an SAE trained elsewhere."""
    return [
        (model, layer) for model in config["models"] for layer in pretrained_saes(config, model)
    ]


def pretrained_transfer_path(model: str, layer: int | str, cond: str) -> str:
    return f"results/transfer/{model}/L{layer}/pretrained/{cond}.json"


def pretrained_survival_path(model: str, layer: int | str, cond: str) -> str:
    """Activation-level survival of the pretrained SAE's features under ``cond``."""
    return f"results/survival/{model}/L{layer}/pretrained/{cond}.csv"


def pretrained_sae_input(config: dict, model: str, layer: int | str) -> list[str]:
    """What the import job reads from this machine: a local SAE's path (so that one a rule
    writes, such as an SAELens export under results/, is built first); nothing for a hub
    SAE, whose coordinates reach the job as a parameter."""
    source = pretrained_saes(config, model)[int(layer)]["source"]
    return [source] if isinstance(source, str) else []


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


def pruned_conditions(config: dict, model: str) -> list[str]:
    return [c for c in conditions(config, model) if c != "dense"]


def seed_pairs(seeds) -> list[tuple[int, int]]:
    return list(itertools.combinations(sorted(seeds), 2))


def stability_matches(config: dict, model: str, layer: int, cond: str) -> list[str]:
    """Every pair of seeds within a condition (RQ1)."""
    pairs = seed_pairs(config["sae"]["seeds"])
    return [match_path(model, layer, cond, a, cond, b) for a, b in pairs]


def survival_matches(config: dict, model: str, layer: int, cond: str) -> list[str]:
    """Every dense x pruned seed pair (RQ2, RQ4): the same-seed pairs (``paired_init``, which
    share their initial dictionary) and every pair of different seeds (``cross_seed``)."""
    seeds = config["sae"]["seeds"]
    return [match_path(model, layer, "dense", a, cond, b) for a in seeds for b in seeds]


def logistic_matches(config: dict, model: str, layer: int, cond: str) -> list[str]:
    """The dense reference SAE vs every seed of a pruned condition: the logistic fit's
    ``paired_init`` (same seed) and ``cross_seed`` (the others) targets, on one feature set."""
    ref = config["analysis"]["reference_seed"]
    return [match_path(model, layer, "dense", ref, cond, s) for s in config["sae"]["seeds"]]


def ablation_condition(config: dict, model: str) -> str:
    """The pruned condition of Table 4: configured, else Wanda (or the first method) at
    the middle of the model's grid."""
    chosen = config["analysis"]["ablation"].get("conditions", {}).get(model)
    if chosen:
        return chosen
    grid = model_grid(config, model)
    method = "wanda" if "wanda" in grid else next(iter(grid))
    sparsities = sorted(s for s in grid[method] if s > 0)
    return condition_name(method, sparsities[(len(sparsities) - 1) // 2])


def model_layers(config: dict):
    for model, spec in config["models"].items():
        for layer in spec["layers"]:
            yield model, layer


TABLES = ("table1", "table2", "table3", "table4", "tableB1")
FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6")


def analysis_targets(config: dict) -> list[str]:
    extra = ["seed_stability", "survival", "quintile_survival", "logistic_fit"]
    extra += ["activation_survival", "table3_activation", "activation_quintile_survival"]
    extra += ["new_features"]
    tables = [f"results/tables/{t}.csv" for t in (*TABLES, *extra)]
    return tables + [f"results/figures/{f}.png" for f in (*FIGURES, "fig4_activation")]


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


def canonical(value):
    """The same settings in one spelling: mappings with sorted keys, all the way down.

    Snakemake compares a job's params with those of its last run as written; sorting
    keys means reordering a config file (or dumping it with another YAML writer)
    reruns nothing.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value
