"""The vocabulary every part of the project speaks: names, pruning methods and conditions.

A condition is ``dense`` or ``<method>-<sparsity>`` (``wanda-0.3``, ``magnitude_2of4-0.5``);
it names a checkpoint and every artifact built from it. This module sits below everything
that reads a config, so analysis code and the workflow plan spell conditions the same way.
"""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

from prunescope.errors import UserInputError

# A model, corpus or Study ALIGN task name becomes a folder name in every artifact path. A
# letter or digit first (so never "." or ".."), and no "/" : the schema's propertyNames and
# the rule files' wildcard constraints use these same patterns.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
TASK_PATTERN = r"[a-z][a-z0-9_]*"
NAME_RULE = "a letter or digit first, then only letters, digits, '_', '.' and '-'"
TASK_RULE = "a lower-case letter first, then only lower-case letters, digits and '_'"

METHOD_RE = re.compile(
    r"^(?P<base>magnitude|wanda|sparsegpt|feature_hybrid|feature)(?:_(?P<n>\d+)of(?P<m>\d+))?$"
)
# pruning methods that read calibration text
CALIBRATED = {"wanda", "sparsegpt", "feature", "feature_hybrid"}
# pruning methods that read the dense model's feature bases (pruning.feature)
FEATURE_AWARE = {"feature", "feature_hybrid"}


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
            f"pruning method {method!r} is unknown: use magnitude, wanda, sparsegpt, feature "
            "or feature_hybrid, optionally with an N:M suffix such as wanda_2of4"
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
    """``dense`` followed by every pruned condition of the model's grid, methods in
    alphabetical order and sparsities ascending: the order of every table's rows and of
    the lists the rules take as params, which a reordered (or re-dumped) config must not
    change."""
    conds = ["dense"]
    grid = model_grid(config, model)
    for method in sorted(grid):
        conds += [condition_name(method, s) for s in sorted(grid[method]) if s > 0]
    return conds


def pruned_conditions(config: dict, model: str) -> list[str]:
    return [c for c in conditions(config, model) if c != "dense"]


def models_by_source(config: dict, source: str) -> list[str]:
    return [name for name, m in config["models"].items() if m["source"] == source]


def model_layers(config: dict):
    for model, spec in config["models"].items():
        for layer in spec["layers"]:
            yield model, layer


def seed_pairs(seeds) -> list[tuple[int, int]]:
    return list(itertools.combinations(sorted(seeds), 2))


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
