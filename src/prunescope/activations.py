"""The fp32 residual-stream activation cache that every SAE is trained and evaluated on.

One HDF5 file per (model, condition, layer): a float32 dataset per split (``train``,
``eval``) of shape ``(n_tokens, d_model)``, rows in window order, plus float64 ``mean``
and ``std`` of the first ``stats_samples`` train rows (the SAE input normalisation) and
the provenance of the run as attributes. Each split also records the SHA-256 of the token
ids behind its rows, so caches of one model's conditions can be shown to hold the same
tokens row for row (``check_token_aligned``) before their activations are compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from prunescope.architectures import stream_width
from prunescope.artifacts import CorruptFileError, damaged, nan_or_inf, open_hdf5, reading
from prunescope.errors import UserInputError
from prunescope.io import atomic_path
from prunescope.models import check_layer_index, residual_hook
from prunescope.plan import canonical

FORMAT_VERSION = 1
CACHE = "activation cache"
SETTINGS_ATTR = "capture_settings"
"""The attribute holding the settings a cache was captured with (JSON, keys sorted)."""
TOKENS_DIGEST_ATTR = "tokens_sha256_{split}"
"""The attribute (``.format(split=...)``) holding the SHA-256 hex digest of the token ids
behind a split's rows, in row order: each window's ids after its skipped positions, as
int64 little-endian bytes. It does not depend on the batch size of the capture."""

# A reader pulling SAE batches of 2,048-4,096 contiguous rows touches one or two whole
# chunks, and a chunk stays 8-18 MiB at the paper's widths (2,048 rows x 2,048-2,304 x 4 B):
# large enough for few I/O calls, small enough to fill from a couple of forward batches.
# Chunks of 1,024-16,384 rows wrote and read within noise of each other (bench/capture.py)
# and the SAE trainer's shuffle blocks follow the chunk size, so 2,048 stays.
DEFAULT_CHUNK_ROWS = 2048

_RESERVED_ATTRS = {
    "mean",
    "std",
    "stats_samples",
    "d_model",
    "layer",
    "context",
    "skip_positions",
    "format_version",
    "dtype",
}


class RunningMoments:
    """Float64 per-dimension mean and population std (ddof=0) of rows seen batch by batch.

    Merges per-batch means and centred sums of squares (Chan et al.), which avoids the
    cancellation of ``E[x^2] - E[x]^2`` when a dimension's mean dwarfs its spread, as
    happens in residual streams with massive activations.
    """

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self._m2 = np.zeros(dim, dtype=np.float64)

    def update(self, rows: np.ndarray) -> None:
        x = np.array(rows, dtype=np.float64)  # always a copy, since it is centred in place
        n_new = x.shape[0]
        if n_new == 0:
            return
        batch_mean = x.mean(axis=0)
        # in place: the values of np.square(x - batch_mean), 5x faster without temporaries
        x -= batch_mean
        batch_m2 = np.square(x, out=x).sum(axis=0)
        total = self.count + n_new
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n_new / total)
        self._m2 = self._m2 + batch_m2 + np.square(delta) * (self.count * n_new / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("no rows were seen, so there is no standard deviation")
        return np.sqrt(self._m2 / self.count)


def all_finite(values: torch.Tensor) -> bool:
    """Whether every element of a floating-point tensor is finite.

    A NaN or Inf anywhere makes the sum non-finite, so one sum settles the usual case; the
    element-wise test runs only when the sum is not finite, which finite values can also
    cause by overflowing it.
    """
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())


def require_finite_rows(rows: torch.Tensor, start: int, source: str) -> None:
    """Refuse a batch of activation rows holding NaN or Inf, naming ``source`` and the first
    such row's index in it (``start`` is the batch's first row)."""
    if not all_finite(rows):
        row = int((~torch.isfinite(rows)).any(-1).nonzero()[0])
        raise FloatingPointError(f"{source} has {nan_or_inf(rows[row])} in row {start + row}")


class ChunkWriter:
    """Appends rows, in order, to a chunked unfiltered 2-D dataset, one whole chunk at a time.

    Rows gather in a buffer of one chunk, which goes to the file as a raw chunk once full,
    so no chunk is written twice or read back whatever the batch size (a batch that ends
    mid-chunk would otherwise make HDF5 re-read the chunk when a chunk exceeds its cache).
    ``close`` writes the last chunk, zero-padded past the end of the dataset.
    """

    def __init__(self, dataset: h5py.Dataset):
        if dataset.ndim != 2 or dataset.chunks is None or dataset.chunks[1] != dataset.shape[1]:
            raise ValueError(
                f"dataset {dataset.name} must be 2-D and chunked by whole rows, got shape "
                f"{dataset.shape} with chunks {dataset.chunks}"
            )
        if dataset.id.get_create_plist().get_nfilters():
            raise ValueError(f"dataset {dataset.name} must have no filters (compression)")
        self.dataset = dataset
        self._buffer = np.zeros(dataset.chunks, dtype=dataset.dtype)
        self._filled = 0
        self._chunk_start = 0

    @property
    def rows_written(self) -> int:
        return self._chunk_start + self._filled

    def append(self, rows: np.ndarray) -> None:
        """Add ``rows`` ``[n, width]`` after the rows already appended."""
        if self.rows_written + len(rows) > self.dataset.shape[0]:
            raise ValueError(
                f"appending {len(rows)} rows after {self.rows_written} overflows dataset "
                f"{self.dataset.name} of {self.dataset.shape[0]} rows"
            )
        taken = 0
        while taken < len(rows):
            n = min(len(rows) - taken, len(self._buffer) - self._filled)
            self._buffer[self._filled : self._filled + n] = rows[taken : taken + n]
            self._filled += n
            taken += n
            if self._filled == len(self._buffer):
                self._write_chunk()

    def close(self) -> None:
        """Write the rows still buffered; call once, after the last ``append``."""
        if self._filled:
            self._buffer[self._filled :] = 0
            self._write_chunk()

    def _write_chunk(self) -> None:
        self.dataset.id.write_direct_chunk((self._chunk_start, 0), self._buffer)
        self._chunk_start += self._filled
        self._filled = 0


def capture_activations(
    model: nn.Module,
    layer: int,
    splits: dict[str, torch.Tensor],
    out_path: str | os.PathLike,
    *,
    provenance: dict,
    batch_size: int = 8,
    stats_samples: int = 50_000,
    skip_positions: int = 0,
    chunk_rows: int | None = None,
    device: torch.device | None = None,
) -> dict:
    """Write the block-output residual stream of ``layer`` for every split to ``out_path``.

    ``splits`` maps a split name to token windows ``[n_windows, context]``; each window is
    one forward pass and contributes ``context - skip_positions`` rows (skipping 1 drops
    the BOS position, an outlier in many models). Activations are computed in the
    model's dtype and stored as float32, streamed one batch at a time. ``mean``/``std``
    come from the first ``stats_samples`` rows of ``train`` in window order, so the
    windows should already be in a random document order. Any NaN/Inf aborts the run
    with ``FloatingPointError`` and leaves no file under ``out_path``. The model is moved
    to ``device`` (default: where it already is). Each split records the SHA-256 of the
    token ids behind its rows (``TOKENS_DIGEST_ATTR``), for ``check_token_aligned``.
    """
    vocab_size = model.get_input_embeddings().num_embeddings
    context = _check_splits(splits, skip_positions, vocab_size)
    check_layer_index(model, layer)
    _check_provenance(provenance, splits)
    if batch_size < 1 or stats_samples < 1:
        raise ValueError(
            f"batch_size ({batch_size}) and stats_samples ({stats_samples}) must be positive"
        )
    chunk_rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    d_model = stream_width(model)
    rows_per_window = context - skip_positions
    n_rows = {name: windows.shape[0] * rows_per_window for name, windows in splits.items()}
    where = ", ".join(f"{k} {provenance[k]}" for k in ("model", "condition") if k in provenance)

    started = time.perf_counter()
    moments = RunningMoments(d_model)
    digests = {}
    # libver v110 stores attributes densely, so mean/std of any width fit (the default
    # object header caps an attribute at 64 KiB, i.e. d_model < 8,192).
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w", libver=("v110", "latest")) as f:
        with residual_hook(model, layer, stop_early=True) as capture, torch.inference_mode():
            for name, windows in splits.items():
                dataset = f.create_dataset(
                    name,
                    shape=(n_rows[name], d_model),
                    dtype="float32",
                    chunks=(min(chunk_rows, n_rows[name]), d_model),
                )
                # raw whole-chunk writes beat one slice write per batch (bench/capture.py)
                writer = ChunkWriter(dataset)
                tokens = hashlib.sha256()
                starts = range(0, windows.shape[0], batch_size)
                for start in tqdm(starts, desc=f"L{layer} {name}", file=sys.stderr, mininterval=5):
                    ids = windows[start : start + batch_size]
                    # a hash fed batch by batch equals the hash of all the bytes at once
                    tokens.update(_row_token_bytes(ids, skip_positions))
                    batch = ids.to(device, torch.long)
                    hidden = capture.run(batch)[:, skip_positions:].float()
                    if not all_finite(hidden):
                        raise FloatingPointError(
                            f"layer {layer} activations ({where or 'unnamed model'}) contain "
                            f"{_first_non_finite(hidden, start, skip_positions)} of split "
                            f"{name!r} (batch of windows {start}-{start + len(batch) - 1}); "
                            "nothing was written"
                        )
                    block = hidden.reshape(-1, d_model).cpu().numpy()
                    writer.append(block)
                    if name == "train" and moments.count < stats_samples:
                        moments.update(block[: stats_samples - moments.count])
                writer.close()
                digests[TOKENS_DIGEST_ATTR.format(split=name)] = tokens.hexdigest()
        f.attrs["mean"] = moments.mean
        f.attrs["std"] = moments.std
        summary = {
            "format_version": FORMAT_VERSION,
            "dtype": "float32",
            "layer": layer,
            "d_model": d_model,
            "context": context,
            "skip_positions": skip_positions,
            "stats_samples": moments.count,
            **{f"n_{name}_tokens": n for name, n in n_rows.items()},
            **digests,
            **provenance,
        }
        f.attrs.update(summary)
    return {"path": str(out_path), **summary, "seconds": time.perf_counter() - started}


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


def _row_token_bytes(ids: torch.Tensor, skip_positions: int) -> np.ndarray:
    """The token ids of a batch of windows whose rows are stored, in row order, as int64
    little-endian: the bytes ``TOKENS_DIGEST_ATTR`` hashes."""
    kept = ids[:, skip_positions:].cpu().numpy()
    return np.ascontiguousarray(kept, dtype="<i8")


def _first_non_finite(hidden: torch.Tensor, first_window: int, skip_positions: int) -> str:
    """Which value (NaN or Inf) a batch of activations [windows, positions, d_model] holds,
    and the window and token position where it first appears."""
    window, position = (~torch.isfinite(hidden)).any(-1).nonzero()[0].tolist()
    kind = nan_or_inf(hidden[window, position])
    return f"{kind} at window {first_window + window}, token position {skip_positions + position}"


def _check_splits(splits: dict[str, torch.Tensor], skip_positions: int, vocab_size: int) -> int:
    """Validate the token windows and return their common context length."""
    if "train" not in splits:
        raise ValueError(f"splits must include 'train' (for mean/std), got {sorted(splits)}")
    contexts = set()
    for name, windows in splits.items():
        if not name or "/" in name or "." in name:
            raise ValueError(f"split name {name!r} must be a plain word (no '/' or '.')")
        if (
            not isinstance(windows, torch.Tensor)
            or windows.ndim != 2
            or windows.is_floating_point()
        ):
            raise ValueError(f"split {name!r} must be an integer tensor [n_windows, context]")
        if windows.shape[0] == 0:
            raise ValueError(f"split {name!r} has no windows")
        if windows.min() < 0 or windows.max() >= vocab_size:
            raise ValueError(
                f"split {name!r} has token ids outside the vocabulary 0..{vocab_size - 1}"
            )
        contexts.add(windows.shape[1])
    if len(contexts) != 1:
        raise ValueError(f"all splits must share one context length, got {sorted(contexts)}")
    context = contexts.pop()
    if not 0 <= skip_positions < context:
        raise ValueError(f"skip_positions {skip_positions} must be in 0..{context - 1}")
    return context


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


def check_token_aligned(
    path_a: str | os.PathLike, path_b: str | os.PathLike, split: str = "eval"
) -> str:
    """Refuse two activation caches whose ``split`` rows do not come from the same tokens
    in the same windows, row for row; return their shared token digest.

    See ``check_all_token_aligned``.
    """
    return check_all_token_aligned([path_a, path_b], split)


@contextlib.contextmanager
def aligned_eval_splits(
    dense_path: str | os.PathLike,
    other_path: str | os.PathLike,
    dense_capture: dict | None = None,
    other_capture: dict | None = None,
):
    """The eval splits of a dense and another cache of the same tokens, open read-only,
    with a name for each to use in errors: ``(dense_rows, other_rows, (name, name))``.

    Row i of both must be the same token, or any row-by-row comparison means nothing, so
    caches that are not token-aligned are refused first (``check_token_aligned``); each is
    checked against its capture settings as ``open_cache`` does.
    """
    check_token_aligned(dense_path, other_path, split="eval")
    with (
        open_cache(dense_path, capture_settings=dense_capture) as dense,
        open_cache(other_path, capture_settings=other_capture) as other,
    ):
        names = (f"the eval split of {dense_path}", f"the eval split of {other_path}")
        yield dense["eval"], other["eval"], names


def check_all_token_aligned(paths: list[str | os.PathLike], split: str = "eval") -> str:
    """Refuse, with a ``UserInputError`` naming two files, caches (e.g. one model's dense
    and pruned conditions at one layer) whose ``split`` rows are not the same tokens in the
    same windows; return the token digest they share.

    Comparing activations row by row across caches is only meaningful when row i of each
    is the same token seen in the same window: equal token digests (``TOKENS_DIGEST_ATTR``)
    and row counts say the same tokens; equal context and skipped positions say the same
    windows, since the token ids after a skipped BOS do not show where windows begin. A
    cache captured before digests were recorded is refused too, as nothing shows its tokens.
    """
    if len(paths) < 2:
        raise ValueError(f"token alignment needs at least two caches, got {len(paths)}")
    first, *others = [(path, _token_layout(path, split)) for path in paths]
    for path, layout in others:
        differences = [
            f"{key} {_shown(first[1][key])} and {_shown(value)}"
            for key, value in layout.items()
            if value != first[1][key]
        ]
        if differences:
            raise UserInputError(
                f"activation caches {first[0]} and {path} hold different tokens in their "
                f"{split!r} split ({'; '.join(differences)}); recapture both with the same "
                "activations settings"
            )
    return first[1]["token digests"]


def _token_layout(path: str | os.PathLike, split: str) -> dict:
    """What decides which token each row of ``split`` in a cache is, read from its attributes."""
    info = read_cache_info(path, required_splits=(split,))
    digest = info["attrs"].get(TOKENS_DIGEST_ATTR.format(split=split))
    if digest is None:
        raise UserInputError(
            f"{CACHE} {path} records no token digest for its {split!r} split (it was captured "
            "before prunescope recorded one), so nothing shows its rows are the same tokens as "
            "another cache's; recapture it (rerun with --forcerun capture_activations)"
        )
    if not _is_sha256_hex(digest):
        raise damaged(CACHE, path, f"has a malformed token digest {digest!r} for {split!r}")
    return {
        "token digests": digest,
        "rows": info["splits"][split],
        "context": info["attrs"].get("context"),
        "skipped positions": info["attrs"].get("skip_positions"),
    }


def _is_sha256_hex(value) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _shown(value):
    """A digest cut to its first 12 hex digits for a message; anything else as it is."""
    return f"{value[:12]}…" if _is_sha256_hex(value) else value


def _check_provenance(provenance: dict, splits: dict) -> None:
    taken = _RESERVED_ATTRS | {
        attr
        for name in splits
        for attr in (f"n_{name}_tokens", TOKENS_DIGEST_ATTR.format(split=name))
    }
    for key, value in provenance.items():
        if key in taken:
            raise ValueError(f"provenance key {key!r} clashes with an attribute the cache writes")
        if not isinstance(value, str | int | float):
            raise ValueError(
                f"provenance value for {key!r} must be a string or number, "
                f"got {type(value).__name__}"
            )
