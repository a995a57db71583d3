"""Opening the files one stage leaves for the next, with one clear error for a damaged file.

A file cut short by a full disk or an interrupted copy, or overwritten with garbage, makes
h5py, safetensors and json fail deep inside with messages that do not say which file is at
fault. The readers here turn those failures into one ``CorruptFileError`` (a ``ValueError``)
naming the file and the remedy, and they check what is cheap to check when the file is
opened: headers, HDF5 metadata (checksummed), the end of each dataset, finite tensors. The
raw rows of an HDF5 dataset carry no checksum, so garbage there shows up only as NaN/Inf,
which the stages reading them refuse.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError

from prunescope.errors import UserInputError

if TYPE_CHECKING:
    import h5py

# What h5py, safetensors, json and numpy raise on a file that is cut short or overwritten:
# h5py raises OSError (unreadable), KeyError (a damaged object) and RuntimeError (damaged
# attributes); a field with garbage in it gives ValueError or TypeError when converted; an
# .npz is a zip archive, checksummed per member.
_READ_ERRORS = (
    OSError,
    RuntimeError,
    KeyError,
    ValueError,
    TypeError,
    EOFError,
    SafetensorError,
    zipfile.BadZipFile,
)


class CorruptFileError(UserInputError):
    """A file that exists but is truncated, corrupt or incomplete; the message names it."""


def damaged(what: str, path: str | os.PathLike, problem: str) -> CorruptFileError:
    """The error for the ``what`` (e.g. "activation cache") at ``path``; ``problem`` goes on
    from the path, e.g. "is truncated or corrupt (file signature not found)"."""
    return CorruptFileError(f"{what} {path} {problem}; delete it and rerun")


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, or FileNotFoundError naming it when it is not a file."""
    path = Path(path)
    if not path.is_file():
        partial = path.with_name(path.name + ".partial").exists()
        hint = " (a .partial beside it means the job writing it was interrupted)"
        raise FileNotFoundError(f"{what} {path} does not exist{hint if partial else ''}")
    return path


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Report an error that a file library raises inside the block as damage to ``path``.

    Wrap only code that reads that one file: any of the errors above counts as damage.
    A ``CorruptFileError`` raised inside passes unchanged.
    """
    try:
        yield
    except CorruptFileError:
        raise
    except _READ_ERRORS as err:
        raise damaged(what, path, _damage(path, err)) from err


@contextlib.contextmanager
def open_hdf5(path: str | os.PathLike, what: str) -> Iterator[h5py.File]:
    """An HDF5 file open read-only for a ``with`` block.

    A file HDF5 cannot open (truncated, empty, not HDF5) raises ``CorruptFileError``. So does
    an OSError without an errno inside the block: that is how HDF5 reports damage it meets
    while reading (a chunk past the end of the file, a bad checksum), whereas errors of the
    operating system (a full disk, permissions) carry an errno and pass unchanged.
    """
    import h5py

    path = require_file(path, what)
    with reading(path, what):
        handle = h5py.File(path, "r")
    with handle:
        try:
            yield handle
        except OSError as err:
            if err.errno is not None:
                raise
            raise damaged(what, path, _damage(path, err)) from err


def read_safetensors(
    path: str | os.PathLike, what: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor (on the CPU) and the string metadata of a safetensors file.

    safetensors refuses a header that does not cover the file exactly, i.e. a truncated file
    or one with bytes added; a floating-point tensor holding NaN or Inf, which garbage over
    its bytes often gives and no stage could use, is refused here.
    """
    from safetensors import safe_open

    path = require_file(path, what)
    with reading(path, what), safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            kind = nan_or_inf(tensor)
            raise damaged(what, path, f"has {kind} in tensor {name!r}, so it is corrupt")
    return tensors, metadata


def read_safetensors_header(
    path: str | os.PathLike, what: str
) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The shape of every tensor and the string metadata of a safetensors file, from its
    header alone (which safetensors checks against the size of the file)."""
    from safetensors import safe_open

    path = require_file(path, what)
    with reading(path, what), safe_open(str(path), framework="pt") as handle:
        shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
        return shapes, dict(handle.metadata() or {})


def read_npz(
    path: str | os.PathLike, what: str, required: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read whole (each member's CRC is checked as it is read).

    Pickled arrays are refused, since no stage writes them. The arrays named in ``required``
    must be there and, when floating-point, finite (other arrays may hold a bound of inf).
    """
    path = require_file(path, what)
    with reading(path, what), _no_pickles(), np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    missing = [name for name in required if name not in arrays]
    if missing:
        raise damaged(what, path, f"lacks the arrays {missing}, so it is incomplete")
    for name in required:
        _require_finite(arrays[name], what, path, f"array {name!r}")
    return arrays


def read_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """The array in an .npy file; a truncated file, garbage or NaN/Inf is refused."""
    path = require_file(path, what)
    with reading(path, what), _no_pickles():
        values = np.load(path, allow_pickle=False)
    _require_finite(values, what, path, "its values")
    return values


@contextlib.contextmanager
def _no_pickles() -> Iterator[None]:
    """numpy takes a garbled .npy header for a pickle and suggests loading it unsafely;
    no stage writes pickles, so say what it is instead."""
    try:
        yield
    except ValueError as err:
        if "pickled" not in str(err):
            raise
        raise ValueError("its array header is unreadable") from err


def _require_finite(values: np.ndarray, what: str, path: Path, name: str) -> None:
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        kind = "NaN" if np.isnan(values).any() else "Inf"
        raise damaged(what, path, f"has {kind} in {name}, so it is corrupt")


def nan_or_inf(values: torch.Tensor) -> str:
    """Which non-finite value a tensor holds: "NaN" when it has any, else "Inf"."""
    return "NaN" if bool(torch.isnan(values).any()) else "Inf"


def _damage(path: Path | str | os.PathLike, err: BaseException) -> str:
    """The rest of the sentence after the path: empty, or truncated/corrupt and the cause."""
    with contextlib.suppress(OSError):
        if Path(path).stat().st_size == 0:
            return "is empty (0 bytes)"
    only = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
    cause = only.strip().splitlines()[0] if only.strip() else type(err).__name__
    return f"is truncated or corrupt ({cause})"
