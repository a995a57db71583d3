"""Token alignment: whether activation caches hold the same tokens, row for row.

Each split of a cache records the SHA-256 of the token ids behind its rows
(``TOKENS_DIGEST_ATTR``), so caches of one model's conditions can be shown to hold the same
tokens in the same windows before their activations are compared row by row.
"""

from __future__ import annotations

import contextlib
import os

from prunescope.activations.cache import (
    CACHE,
    TOKENS_DIGEST_ATTR,
    open_cache,
    read_cache_info,
)
from prunescope.artifacts import damaged
from prunescope.errors import UserInputError


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
