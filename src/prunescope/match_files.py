"""The file of one dictionary match: ``save_matches`` writes a ``MatchResult``'s per-feature
arrays and its provenance to HDF5, and ``load_matches`` reads them back, refusing a file
that is missing, damaged, of another format or incomplete, with its path named."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from prunescope.artifacts import damaged, open_hdf5, reading
from prunescope.io import atomic_path
from prunescope.matching import MatchResult

FILE_FORMAT = "prunescope.matches/1"
MATCH_FILE = "match file"
_DATASETS = ("a_best", "a_best_cos", "b_best", "b_best_cos", "mnn", "greedy_partner", "taus")


def save_matches(result: MatchResult, path: str | os.PathLike, attrs: dict | None = None) -> None:
    """Write the per-feature match arrays (never the dense matrix) to HDF5, atomically.

    ``attrs`` carries provenance (model, condition pair, seeds, layer). Scalars are plain
    HDF5 attributes; lists, dicts and None are stored as ``json:``-prefixed strings so
    they come back from ``load_matches`` as they went in.
    """
    merged = {**result.attrs, **(attrs or {})}
    with atomic_path(path) as tmp:
        # libver v110 gives the file's metadata checksums, so damage to it is found on reading
        with h5py.File(tmp, "w", libver=("v110", "latest")) as handle:
            for name in _DATASETS:
                handle.create_dataset(name, data=getattr(result, name))
            handle.attrs["format"] = FILE_FORMAT
            for key, value in merged.items():
                handle.attrs[key] = _attr_value(value)


def _attr_value(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    return "json:" + json.dumps(value)


def _attr_python(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[len("json:") :])
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_matches(path: str | os.PathLike) -> MatchResult:
    """Read a file written by ``save_matches``; a missing or damaged file is named."""
    with open_hdf5(path, MATCH_FILE) as handle, reading(path, MATCH_FILE):
        if handle.attrs.get("format") != FILE_FORMAT:
            raise damaged(MATCH_FILE, path, f"has no format attribute {FILE_FORMAT!r}")
        missing = [name for name in _DATASETS if name not in handle]
        if missing:
            raise damaged(MATCH_FILE, path, f"lacks the datasets {missing}, so it is incomplete")
        arrays = {name: handle[name][()] for name in _DATASETS}
        attrs = {k: _attr_python(v) for k, v in handle.attrs.items() if k != "format"}
    result = MatchResult(**arrays, attrs=attrs)
    n_a, n_taus = len(result.a_best), len(result.taus)
    shapes_ok = (
        result.a_best_cos.shape == (n_a,)
        and result.mnn.shape == (n_a,)
        and result.b_best_cos.shape == result.b_best.shape
        and result.greedy_partner.shape == (n_taus, n_a)
    )
    if not shapes_ok:
        raise damaged(MATCH_FILE, path, "has inconsistent array shapes")
    return result
