"""The workflow's artifacts read into what the table builders take: per-condition tables
keyed as the rules list them, and the per-feature firing rates of the dense SAEs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prunescope.io import read_json


def read_keyed_tables(keys: Iterable[Sequence], paths: Iterable[str]) -> dict[tuple, pd.DataFrame]:
    """The CSV file at each path by its key, ``(model, layer, ...)`` with the layer an int.

    ``keys`` and ``paths`` run in step, as a rule's ``params.conditions`` and its inputs do.
    """
    return {
        (key[0], int(key[1]), *key[2:]): pd.read_csv(path)
        for key, path in zip(keys, paths, strict=True)
    }


def dense_firing_rates(metrics_paths: Iterable[str]) -> dict[tuple[str, int, int], np.ndarray]:
    """Per-feature eval firing rates of every dense SAE seed, by (model, layer, seed)."""
    firing = {}
    for path in metrics_paths:
        cfg = read_json(Path(path).with_name("cfg.json"))
        key = (cfg["provenance"]["model"], int(cfg["provenance"]["layer"]), int(cfg["seed"]))
        firing[key] = np.asarray(read_json(path)["firing_rate"], dtype=float)
    return firing


def reference_firing_rates(metrics_paths: Iterable[str]) -> dict[tuple[str, int], np.ndarray]:
    """Per-feature eval firing rates of the dense reference SAEs (one seed per model and
    layer), by (model, layer)."""
    return {
        (model, layer): rate
        for (model, layer, _), rate in dense_firing_rates(metrics_paths).items()
    }
