"""The fp32 residual-stream activation cache that every SAE is trained and evaluated on.

One HDF5 file per (model, condition, layer): a float32 dataset per split (``train``,
``eval``) of shape ``(n_tokens, d_model)``, rows in window order, plus float64 ``mean``
and ``std`` of the first ``stats_samples`` train rows (the SAE input normalisation) and
the provenance of the run as attributes. Each split also records the SHA-256 of the token
ids behind its rows, so caches of one model's conditions can be shown to hold the same
tokens row for row (``check_token_aligned``) before their activations are compared.

:mod:`.capture` writes a cache, :mod:`.cache` reads and validates one, :mod:`.alignment`
compares the tokens of several, and :mod:`.rows` holds what streams rows batch by batch.
"""

from prunescope.activations.alignment import (
    aligned_eval_splits,
    check_all_token_aligned,
    check_token_aligned,
)
from prunescope.activations.cache import (
    CACHE,
    FORMAT_VERSION,
    SETTINGS_ATTR,
    TOKENS_DIGEST_ATTR,
    StaleCacheError,
    check_capture_settings,
    open_cache,
    read_cache_info,
    setting_changes,
    settings_record,
)
from prunescope.activations.capture import DEFAULT_CHUNK_ROWS, capture_activations, tokens_digest
from prunescope.activations.rows import (
    ChunkWriter,
    RunningMoments,
    all_finite,
    require_finite_rows,
)

__all__ = [
    "CACHE",
    "DEFAULT_CHUNK_ROWS",
    "FORMAT_VERSION",
    "SETTINGS_ATTR",
    "TOKENS_DIGEST_ATTR",
    "ChunkWriter",
    "RunningMoments",
    "StaleCacheError",
    "aligned_eval_splits",
    "all_finite",
    "capture_activations",
    "tokens_digest",
    "check_all_token_aligned",
    "check_capture_settings",
    "check_token_aligned",
    "open_cache",
    "read_cache_info",
    "require_finite_rows",
    "setting_changes",
    "settings_record",
]
