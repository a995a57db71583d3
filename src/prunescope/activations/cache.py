"""Reading an activation cache: its layout, validation on open, and the settings it records.

``read_cache_info`` checks a file's datasets and attributes against the layout
``capture_activations`` writes; ``open_cache`` opens it read-only after that check and,
given the settings the config asks for now, refuses a stale cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from prunescope.artifacts import CorruptFileError, damaged, open_hdf5, reading
from prunescope.conditions import canonical
from prunescope.errors import UserInputError

FORMAT_VERSION = 1
CACHE = "activation cache"
SETTINGS_ATTR = "capture_settings"
"""The attribute holding the settings a cache was captured with (JSON, keys sorted)."""
TOKENS_DIGEST_ATTR = "tokens_sha256_{split}"
"""The attribute (``.format(split=...)``) holding the SHA-256 hex digest of the token ids
behind a split's rows, in row order: each window's ids after its skipped positions, as
int64 little-endian bytes. It does not depend on the batch size of the capture."""


def read_cache_info(
    path: str | os.PathLike, required_splits: tuple[str, ...] = ("train", "eval")
) -> dict:
    """Validate an activation cache and return its shapes, attributes and float64 stats.

    Returns ``{"path", "d_model", "splits": {name: n_rows}, "mean", "std", "attrs"}``.
    Raises ``FileNotFoundError`` for a missing file and ``CorruptFileError`` (a
    ``ValueError``) naming the file when it is truncated, corrupt or incomplete. Reads only
    the metadata and the last row of each dataset, so it is cheap whatever the size.
    """
    with open_hdf5(path, CACHE) as f, reading(path, CACHE):
        return _validated_info(f, Path(path), required_splits)


def open_cache(
    path: str | os.PathLike,
    required_splits: tuple[str, ...] = ("train", "eval"),
    capture_settings: dict | None = None,
) -> contextlib.AbstractContextManager[h5py.File]:
    """Validate an activation cache now and return it to open read-only in a ``with`` block.

    Damage that only shows while reading inside the block (HDF5 errors) is reported as a
    ``CorruptFileError`` naming the file, at no cost to the reads themselves. With
    ``capture_settings``, a cache captured with other settings is refused
    (``check_capture_settings``).
    """
    info = read_cache_info(path, required_splits)
    if capture_settings is not None:
        check_capture_settings(info, capture_settings)
    return open_hdf5(path, CACHE)


def _validated_info(f: h5py.File, path: Path, required_splits: tuple[str, ...]) -> dict:
    def fail(problem: str) -> CorruptFileError:
        return damaged(CACHE, path, problem)

    for name in required_splits:
        if name not in f:
            raise fail(f"has no {name!r} dataset (it has {sorted(f.keys())}), so it is incomplete")
    missing = [key for key in ("mean", "std", "d_model", "format_version") if key not in f.attrs]
    if missing:
        raise fail(f"lacks the attributes {missing}, so it is incomplete")
    if int(f.attrs["format_version"]) != FORMAT_VERSION:
        raise fail(f"has format_version {f.attrs['format_version']}, expected {FORMAT_VERSION}")
    d_model = int(f.attrs["d_model"])
    splits = {}
    for name, dataset in f.items():
        if not isinstance(dataset, h5py.Dataset):
            raise fail(f"holds {name!r}, which is not a dataset")
        if dataset.ndim != 2 or dataset.shape[1] != d_model or dataset.dtype != np.float32:
            raise fail(
                f"has dataset {name!r} of shape {dataset.shape} and dtype {dataset.dtype}, "
                f"expected (n, {d_model}) float32"
            )
        expected_rows = f.attrs.get(f"n_{name}_tokens")
        if expected_rows is not None and int(expected_rows) != dataset.shape[0]:
            raise fail(f"has {dataset.shape[0]} {name!r} rows but records {int(expected_rows)}")
        if dataset.shape[0]:
            dataset[-1]  # reading the last row finds data lost past the end of the file
        splits[name] = dataset.shape[0]
    mean, std = np.asarray(f.attrs["mean"]), np.asarray(f.attrs["std"])
    if mean.shape != (d_model,) or std.shape != (d_model,):
        raise fail(f"has mean/std of shapes {mean.shape}/{std.shape}, expected ({d_model},)")
    attrs = {
        key: value.item() if isinstance(value, np.generic) else value
        for key, value in f.attrs.items()
        if key not in ("mean", "std")
    }
    return {
        "path": str(path),
        "d_model": d_model,
        "splits": splits,
        "mean": mean,
        "std": std,
        "attrs": attrs,
    }


def settings_record(settings: dict) -> str:
    """The capture settings in one spelling, to store under ``SETTINGS_ATTR``."""
    return json.dumps(canonical(settings), sort_keys=True)


class StaleCacheError(UserInputError):
    """An activation cache captured with other settings than the config now asks for."""


def check_capture_settings(info: dict, settings: dict) -> None:
    """Refuse a cache (``info`` from ``read_cache_info``) whose recorded capture settings
    differ from ``settings``.

    A cache is stale when the config was edited and its recapture then failed: the
    workflow plans the recapture again, but a run told to trust file dates
    (``--rerun-triggers mtime``) or to ignore a failed job would read the old cache.
    Caches written before settings were recorded are not checked.
    """
    recorded = info["attrs"].get(SETTINGS_ATTR)
    if recorded is None:
        return
    changes = list(setting_changes(json.loads(recorded), canonical(settings)))
    if changes:
        raise StaleCacheError(
            f"{CACHE} {info['path']} was captured with other settings than the config asks "
            f"for now ({'; '.join(changes)}); rerun with --forcerun capture_activations"
        )


def setting_changes(before, now, prefix: str = ""):
    """``"key.sub: old -> new"`` for every leaf that differs between two settings trees."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in sorted(before.keys() | now.keys()):
            yield from setting_changes(before.get(key), now.get(key), f"{prefix}{key}.")
    elif before != now:
        yield f"{prefix.rstrip('.')}: {before!r} -> {now!r}"
