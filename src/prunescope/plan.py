"""The experiment grid as plain data: conditions, artifact paths and config checks.

The Snakemake rule files ask this module what to build; it knows nothing of
Snakemake, so the grid logic is unit-tested like the rest of the library.
"""

from __future__ import annotations

import re
from pathlib import Path

METHOD_RE = re.compile(r"^(?P<base>magnitude|wanda|sparsegpt)(?:_(?P<n>\d+)of(?P<m>\d+))?$")
CALIBRATED = {"wanda", "sparsegpt"}


def format_sparsity(sparsity: float) -> str:
    """``0.3`` -> ``"0.3"``: the spelling used in condition names and paths."""
    return f"{float(sparsity):g}"


def parse_method(method: str) -> tuple[str, tuple[int, int] | None]:
    """``wanda_2of4`` -> ``("wanda", (2, 4))``; ``magnitude`` -> ``("magnitude", None)``."""
    match = METHOD_RE.match(method)
    if match is None:
        raise ValueError(
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


# --- artifact paths -------------------------------------------------------------------------


def model_dir(model: str, cond: str) -> str:
    return f"results/models/{model}/{cond}"


def perplexity_path(model: str, cond: str) -> str:
    return f"results/perplexity/{model}/{cond}.json"


def activation_path(model: str, cond: str, layer: int) -> str:
    return f"results/activations/{model}/{cond}/L{layer}.h5"


def sae_dir(model: str, cond: str, layer: int, seed: int) -> str:
    return f"results/sae/{model}/{cond}/L{layer}/seed{seed}"


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


def check_config(config: dict) -> None:
    """Raise one ``ValueError`` sentence naming the offending key, before any job runs."""
    corpora = config["corpora"]
    for name, corpus in corpora.items():
        _check_corpus(name, corpus)
    for name, spec in config["models"].items():
        _check_model(config, name, spec)
    ppl = config["perplexity"]
    if ppl.get("corpus") is not None and ppl["corpus"] not in corpora:
        raise ValueError(f"perplexity.corpus {ppl['corpus']!r} is not a key of corpora")
    if ppl["stride"] >= ppl["window"]:
        raise ValueError(
            "perplexity.stride must be below perplexity.window: each window starts with BOS, "
            "so it holds window - 1 text tokens"
        )
    _check_grid("pruning.grid", config["pruning"]["grid"])


def _check_corpus(name: str, corpus: dict) -> None:
    key = f"corpora.{name}"
    required = {"textfile": "paths", "hf": "dataset"}.get(corpus["source"])
    if required and required not in corpus:
        raise ValueError(f"{key} has source {corpus['source']} but no {required!r}")
    total = sum(corpus.get("fractions", {}).values())
    if total > 1 + 1e-9:
        raise ValueError(f"{key}.fractions add up to {total:g}, more than 1")


def _check_model(config: dict, name: str, spec: dict) -> None:
    key = f"models.{name}"
    if spec["corpus"] not in config["corpora"]:
        raise ValueError(f"{key}.corpus {spec['corpus']!r} is not a key of corpora")
    if spec.get("grid"):
        _check_grid(f"{key}.grid", spec["grid"])
    if spec["source"] == "local":
        depth = spec["architecture"].get("num_hidden_layers", 32)
        for layer in spec["layers"]:
            if layer >= depth:
                raise ValueError(
                    f"{key}.layers: layer {layer} is past the model's depth ({depth} layers)"
                )
        positions = spec["architecture"].get("max_position_embeddings", 2048)
        for ctx_key in ("activations", "perplexity", "training"):
            block = spec["training"] if ctx_key == "training" else config[ctx_key]
            ctx = block.get("window" if ctx_key == "perplexity" else "context", 0)
            if ctx > positions:
                raise ValueError(
                    f"{ctx_key} context {ctx} exceeds {key}.architecture.max_position_embeddings"
                )
    else:
        target = spec["name"]
        looks_local = target.startswith(("/", "./", "../", "~"))
        if looks_local and not Path(target).expanduser().is_dir():
            raise ValueError(f"{key}.name: model folder {target!r} does not exist")
        if spec.get("dtype") == "float16" and "gemma" in target.lower():
            raise ValueError(
                f"{key}.dtype float16 is refused for Gemma: its residual stream overflows "
                "float16 at deep layers (use bfloat16 or float32)"
            )


def _check_grid(key: str, grid: dict) -> None:
    for method, sparsities in grid.items():
        _, nm = parse_method(method)
        if nm is None:
            continue
        n, m = nm
        if n >= m:
            raise ValueError(f"{key}.{method}: N:M needs N < M")
        for s in sparsities:
            if abs(s - n / m) > 1e-9:
                raise ValueError(
                    f"{key}.{method}: an {n}:{m} pattern has sparsity {n / m:g}, not {s:g}"
                )
