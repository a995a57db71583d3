"""Capturing an activation cache: one forward pass per window, rows streamed to HDF5."""

from __future__ import annotations

import hashlib
import os
import sys
import time

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from prunescope.activations.cache import FORMAT_VERSION, TOKENS_DIGEST_ATTR
from prunescope.activations.rows import ChunkWriter, RunningMoments, all_finite
from prunescope.architectures import stream_width
from prunescope.artifacts import nan_or_inf
from prunescope.io import atomic_path
from prunescope.models import RESID_POST, ResidualCapture, check_layer_index, residual_hook

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
    "site",
    "context",
    "skip_positions",
    "format_version",
    "dtype",
}


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
    site: str = RESID_POST,
) -> dict:
    """Write the block-output residual stream of ``layer`` for every split to ``out_path``
    (or, with ``site`` ``attn_in`` / ``mlp_in``, the stream entering the block's attention /
    MLP norm, which feature-aware pruning reads).

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
    context, chunk_rows = _check_arguments(
        model, layer, splits, provenance, batch_size, stats_samples, skip_positions, chunk_rows
    )
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
        with (
            residual_hook(model, layer, stop_early=True, site=site) as capture,
            torch.inference_mode(),
        ):
            stream = _SplitStream(capture, device, batch_size, skip_positions, where)
            for name, windows in splits.items():
                dataset = f.create_dataset(
                    name,
                    shape=(n_rows[name], d_model),
                    dtype="float32",
                    chunks=(min(chunk_rows, n_rows[name]), d_model),
                )
                stats_rows = stats_samples if name == "train" else 0
                digests[TOKENS_DIGEST_ATTR.format(split=name)] = stream.write(
                    name, windows, dataset, moments, stats_rows
                )
        f.attrs["mean"] = moments.mean
        f.attrs["std"] = moments.std
        summary = {
            "format_version": FORMAT_VERSION,
            "dtype": "float32",
            "layer": layer,
            "site": site,
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


class _SplitStream:
    """Streams the rows of a split's windows, one forward batch at a time, into its dataset.

    ``where`` names the model and condition in the error a NaN or Inf raises.
    """

    def __init__(
        self,
        capture: ResidualCapture,
        device: torch.device,
        batch_size: int,
        skip_positions: int,
        where: str,
    ):
        self.capture = capture
        self.device = device
        self.batch_size = batch_size
        self.skip_positions = skip_positions
        self.where = where

    def write(
        self,
        name: str,
        windows: torch.Tensor,
        dataset: h5py.Dataset,
        moments: RunningMoments,
        stats_rows: int,
    ) -> str:
        """Write split ``name`` and return the SHA-256 of the token ids behind its rows;
        ``moments`` takes rows until it has seen ``stats_rows`` (none when 0)."""
        # raw whole-chunk writes beat one slice write per batch (bench/capture.py)
        writer = ChunkWriter(dataset)
        tokens = hashlib.sha256()
        starts = range(0, windows.shape[0], self.batch_size)
        desc = f"L{self.capture.layer} {name}"
        for start in tqdm(starts, desc=desc, file=sys.stderr, mininterval=5):
            ids = windows[start : start + self.batch_size]
            # a hash fed batch by batch equals the hash of all the bytes at once
            tokens.update(_row_token_bytes(ids, self.skip_positions))
            batch = ids.to(self.device, torch.long)
            hidden = self.capture.run(batch)[:, self.skip_positions :].float()
            if not all_finite(hidden):
                raise FloatingPointError(self._non_finite_message(hidden, name, start, len(batch)))
            block = hidden.reshape(-1, dataset.shape[1]).cpu().numpy()
            writer.append(block)
            if moments.count < stats_rows:
                moments.update(block[: stats_rows - moments.count])
        writer.close()
        return tokens.hexdigest()

    def _non_finite_message(self, hidden: torch.Tensor, name: str, start: int, n: int) -> str:
        return (
            f"layer {self.capture.layer} activations ({self.where or 'unnamed model'}) contain "
            f"{_first_non_finite(hidden, start, self.skip_positions)} of split "
            f"{name!r} (batch of windows {start}-{start + n - 1}); "
            "nothing was written"
        )


def _check_arguments(
    model, layer, splits, provenance, batch_size, stats_samples, skip_positions, chunk_rows
) -> tuple[int, int]:
    """Validate ``capture_activations``'s arguments; return the windows' context length and
    the chunk size in rows."""
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
    return context, chunk_rows


def tokens_digest(windows: torch.Tensor, skip_positions: int) -> str:
    """The SHA-256 ``TOKENS_DIGEST_ATTR`` records for a split of these token windows."""
    return hashlib.sha256(_row_token_bytes(windows, skip_positions)).hexdigest()


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
