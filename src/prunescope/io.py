"""Small file helpers shared by every stage: atomic writes and JSON."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from prunescope.errors import UserInputError, listed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only on success.

    A job killed half-way leaves ``<name>.partial`` behind, never a file or
    folder under the final name that a later rule could mistake for complete.
    Works for files and for folders (e.g. a saved HF model).
    """
    final = Path(path)
    if final.name in {"", ".", ".."}:
        raise UserInputError(f"output path {str(path)!r} names no file or folder of its own")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".partial")
    _remove(tmp)
    try:
        yield tmp
        _make_way(final, tmp)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _make_way(final: Path, new: Path) -> None:
    """Remove the previous version of ``final`` so that ``new`` can take its name.

    A folder is removed only when everything in it has a namesake in the new folder, i.e.
    when it is an earlier copy of the same artifact: whatever else sits under that name
    (a user's files, a parent folder reached through a strange name) was not made here
    and is never deleted.
    """
    if not final.is_dir() or final.is_symlink():
        _remove(final)
        return
    ours = {p.name for p in new.iterdir()} if new.is_dir() else set()
    foreign = sorted(p.name for p in final.iterdir() if p.name not in ours)
    if foreign:
        raise UserInputError(
            f"{final} already exists and holds what this job did not write "
            f"({listed(foreign, shown=5)}); "
            "move it away or delete it yourself"
        )
    _remove(final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike, data) -> None:
    """Write ``data`` as block-style YAML in the given key order, atomically."""
    import yaml

    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """The parsed contents of a JSON file; a missing file raises FileNotFoundError and an
    unparsable (truncated, empty, overwritten) one a ``CorruptFileError``, each naming it."""
    from prunescope.artifacts import damaged, require_file

    path = require_file(path, what)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problem = (
            "is empty (0 bytes)"
            if not path.stat().st_size
            else f"is truncated or corrupt (not valid JSON: {err})"
        )
        raise damaged(what, path, problem) from err


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas frame as CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
