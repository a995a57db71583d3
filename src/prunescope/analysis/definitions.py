"""What a survival number measures, and the key columns every table of the analyses shares.

Each row of a survival table names its ``definition`` (``DEFINITIONS``); rows sort by the
keys first and the definitions in that dictionary's order, and every survival table is
written through ``write_survival_table``, which refuses a row without a known definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from prunescope.conditions import parse_condition
from prunescope.io import write_csv

DEFINITIONS = {
    "activation": "the dense reference SAE applied to the dense and to the pruned model's "
    "activations of the same tokens; a dense feature survives when the correlation of its "
    "two activation series reaches tau",
    "matched_noise": "control for activation: the same SAE on the dense activations and on "
    "the dense activations moved, token by token, as far as pruning moved them but in a random "
    "direction; the survival any perturbation that large would leave",
    "paired_init": "decoder MNN between the dense and the pruned SAE trained from the same seed, "
    "hence from the same initial dictionary; mean over seeds",
    "cross_seed": "decoder MNN between dense and pruned SAEs of different seeds (independent "
    "initialisations); mean over every such pair",
    "seed_floor": "decoder MNN between dense SAEs of different seeds: what two independently "
    "initialised SAEs of the same model share; mean over seed pairs",
}
"""What each value of a survival table's ``definition`` column means (README, captions)."""

KEYS = ("model", "layer", "condition", "method", "sparsity", "definition")
TABLE_KEYS = ("model", "layer", "sae", "condition", "method", "sparsity", "definition")
"""The columns a survival table leads with, those it has, in this order."""


def condition_columns(cond: str) -> dict:
    method, sparsity = parse_condition(cond)
    return {"condition": cond, "method": method, "sparsity": sparsity}


def match_keys(attrs: dict, side: str) -> dict:
    """Model, layer and the condition columns of one side (``a`` or ``b``) of a match."""
    cond = attrs[f"cond_{side}"]
    return {"model": attrs["model"], "layer": attrs["layer"], **condition_columns(cond)}


def pair_definition(attrs: dict) -> str:
    """Which decoder-survival definition a match between two SAEs measures, from its attrs."""
    cond_a, cond_b = attrs["cond_a"], attrs["cond_b"]
    same_seed = int(attrs["seed_a"]) == int(attrs["seed_b"])
    if cond_a != "dense":
        raise ValueError(f"a decoder-survival match has the dense SAE on side A, not {cond_a!r}")
    if cond_b == "dense":
        if same_seed:
            raise ValueError("a dense SAE matched with itself measures nothing")
        return "seed_floor"
    return "paired_init" if same_seed else "cross_seed"


def decoder_pair_keys(attrs: dict) -> dict:
    """The keys of a dense x other-SAE match's rows: the other side's condition, the
    definition the pair measures and both seeds."""
    keys = match_keys(attrs, "b") | {"definition": pair_definition(attrs)}
    return keys | {"seed_a": attrs["seed_a"], "seed_b": attrs["seed_b"]}


def keys_first(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the ``TABLE_KEYS`` it has as its first columns."""
    keys = [key for key in TABLE_KEYS if key in frame.columns]
    return frame[keys + [c for c in frame.columns if c not in keys]]


def in_definition_order(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by ``by`` with definitions in DEFINITIONS' order, keys first."""
    rank = {d: i for i, d in enumerate(DEFINITIONS)}
    frame = frame.assign(_rank=frame["definition"].map(rank))
    by = [c if c != "definition" else "_rank" for c in by]
    frame = frame.sort_values(by, kind="stable", ignore_index=True).drop(columns="_rank")
    return keys_first(frame)


def write_survival_table(path, frame: pd.DataFrame) -> None:
    """Write a survival table, refusing one whose rows do not name a known definition.

    Every table of survival goes through here, so that no number can leave the workflow
    without saying which of ``DEFINITIONS`` it measures.
    """
    if "definition" not in frame.columns:
        raise ValueError(
            f"survival table {path} has no 'definition' column: every survival number must "
            f"say which definition it measures (one of {sorted(DEFINITIONS)})"
        )
    unknown = sorted({str(d) for d in frame["definition"] if d not in DEFINITIONS})
    if unknown:
        raise ValueError(
            f"survival table {path} has definition(s) {unknown}, which are not among "
            f"{sorted(DEFINITIONS)}"
        )
    write_csv(path, frame)
