"""The text around each feature's strongest activations, and the feature's activation on
every token of it, in the dense and in the pruned model.

A feature card shades each token of a context by the feature's activation there; beside
it, the same tokens shaded by the same feature on the pruned model's activations show what
pruning did to it. Those activations are gathered in one more pass over the eval rows,
after the top rows are known, for every feature's first ``n_contexts`` top rows: the
result, ``d_sae x n_contexts x (before + 1 + after)`` values a side, is small whatever
the number of rows, so the pages never need the (large, temporary) activation caches.
"""

from __future__ import annotations

import numpy as np
import torch

from prunescope.browser.top import TopResult
from prunescope.survival.encoders import as_latent_encoder, encode_rows
from prunescope.survival.rows import default_batch_rows, iter_row_chunks


def context_rows(top_rows: np.ndarray, rows_per_window: int, before: int, after: int) -> np.ndarray:
    """Row ids of the context of each row of ``top_rows`` (any shape): ``before`` rows
    before it to ``after`` after it, as a last axis of ``before + 1 + after``; -1 where the
    context runs past the edge of the row's window (rows of one window are one forward
    pass: text beyond it was not seen) and everywhere for a top row of -1."""
    top_rows = np.asarray(top_rows, dtype=np.int64)
    rows = top_rows[..., None] + np.arange(-before, after + 1)
    window = np.floor_divide(top_rows, rows_per_window)[..., None]
    inside = (rows >= 0) & (np.floor_divide(rows, rows_per_window) == window)
    return np.where(inside & (top_rows[..., None] >= 0), rows, -1)


@torch.no_grad()
def gather_latents(
    rows_source, encoder, rows: np.ndarray, features: np.ndarray, source: str, batch_rows: int
) -> np.ndarray:
    """The latent of ``features[i]`` at row ``rows[i]`` of ``rows_source`` for every ``i``
    (arrays of one shape; NaN where the row is -1), in one pass over the source's rows."""
    flat_rows, flat_features = rows.ravel(), features.ravel()
    wanted = np.flatnonzero(flat_rows >= 0)
    wanted = wanted[np.argsort(flat_rows[wanted], kind="stable")]
    sorted_rows = flat_rows[wanted]
    out = np.full(flat_rows.shape, np.nan, dtype=np.float32)
    start = 0
    for chunk in iter_row_chunks(rows_source, batch_rows):
        stop = start + len(chunk)
        lo, hi = np.searchsorted(sorted_rows, [start, stop])
        if hi > lo:
            codes = encode_rows(encoder, chunk, start, source)
            at = torch.as_tensor(sorted_rows[lo:hi] - start, device=codes.device)
            which = torch.as_tensor(flat_features[wanted[lo:hi]], device=codes.device)
            out[wanted[lo:hi]] = codes[at, which].cpu().numpy()
        start = stop
    return out.reshape(rows.shape)


def _context_plan(sae, top: TopResult, n_contexts, before, after, rows_per_window):
    """The encoder, each feature's context rows, the matching feature ids, the batch size."""
    encoder = as_latent_encoder(sae)
    rows = context_rows(top.rows[:, :n_contexts], rows_per_window, before, after)
    features = np.broadcast_to(np.arange(rows.shape[0])[:, None, None], rows.shape)
    return encoder, rows, features, default_batch_rows(encoder.d_sae)


def feature_contexts(
    dense_rows,
    pruned_rows,
    sae,
    dense_top: TopResult,
    *,
    n_contexts: int,
    before: int,
    after: int,
    rows_per_window: int,
    sources: tuple[str, str] = ("dense activations", "pruned activations"),
) -> dict[str, np.ndarray]:
    """For every feature's first ``n_contexts`` dense top rows: the context's row ids
    (``rows``, int32, -1 outside) and the feature's activation on each of its tokens on the
    dense and on the pruned rows (``dense``, ``pruned``: float32, NaN outside)."""
    encoder, rows, features, batch_rows = _context_plan(
        sae, dense_top, n_contexts, before, after, rows_per_window
    )
    return {
        "rows": rows.astype(np.int32),
        "dense": gather_latents(dense_rows, encoder, rows, features, sources[0], batch_rows),
        "pruned": gather_latents(pruned_rows, encoder, rows, features, sources[1], batch_rows),
    }


def own_contexts(
    rows_source,
    sae,
    top: TopResult,
    *,
    n_contexts: int,
    before: int,
    after: int,
    rows_per_window: int,
    source: str = "activations",
) -> dict[str, np.ndarray]:
    """``feature_contexts`` for one side: every feature's activation around its own first
    ``n_contexts`` top rows of ``rows_source`` (``rows`` and ``own``)."""
    encoder, rows, features, batch_rows = _context_plan(
        sae, top, n_contexts, before, after, rows_per_window
    )
    own = gather_latents(rows_source, encoder, rows, features, source, batch_rows)
    return {"rows": rows.astype(np.int32), "own": own}
