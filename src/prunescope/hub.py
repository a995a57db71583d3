"""Why a model or dataset could not come from the Hugging Face hub, told in one clause.

``transformers`` and ``datasets`` wrap every hub failure (no network, ``HF_HUB_OFFLINE``,
a repository that does not exist or is gated, a damaged cache) in a chain of exceptions
a hundred lines long whose top message rarely says which it was. ``hub_failure`` walks
that chain once and returns what went wrong and what the user can do about it, so the
callers can raise a single sentence that names the model id or dataset and its config key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from json import JSONDecodeError
from pathlib import Path


def only_a_path(name: str) -> bool:
    """Whether ``name`` can only mean a folder: it starts like a path (``/``, ``~``, ``./``,
    ``../``, ``results/``) or is no valid hub id (``a/b/c``, spaces, ...). Other names are
    hub ids unless a folder of that name exists. The dry-run and the loader both ask this."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if name.startswith(("/", "~", "./", "../", "results/")):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


@dataclass(frozen=True)
class HubFailure:
    """``reason`` goes after "could not be downloaded:"; ``fix`` names what to run or check;
    ``unfound`` says the name led nowhere, so it may have been meant as a local path."""

    reason: str
    fix: str
    unfound: bool = False


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a download from the hub raises when the hub or the cache is at fault.

    ``OSError`` covers what transformers re-raises (always an OSError), ConnectionError and
    every HTTP error of huggingface_hub; the transport library's own errors escape only when
    a connection drops in the middle of a file, after huggingface_hub's retries.
    """
    from huggingface_hub import errors
    from safetensors import SafetensorError

    # huggingface_hub.errors re-exports the base error of its HTTP library (httpx2 today).
    transport = getattr(errors, "HTTPError", OSError)
    return (OSError, errors.EntryNotFoundError, transport, SafetensorError)


def hub_failure(
    err: BaseException, *, repo: str, kind: str, key: str, revision: str | None = None
) -> HubFailure:
    """What went wrong fetching ``repo`` (``kind`` is "model" or "dataset", ``key`` the
    config key that names it), read from the most telling error in ``err``'s chain."""
    from huggingface_hub import constants, errors
    from safetensors import SafetensorError

    chain = list(_chain(err))

    def first(*types: type[BaseException]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, types)), None)

    not_found: tuple[type[BaseException], ...] = (errors.RepositoryNotFoundError,)
    if kind == "dataset":
        from datasets.exceptions import DatasetNotFoundError

        not_found += (DatasetNotFoundError,)
    download = (
        f"hf download {repo}" if kind == "model" else f"hf download --repo-type {kind} {repo}"
    )
    if revision:
        download += f" --revision {revision}"
    offline_fix = _offline_fix(download, kind, key)
    unreachable = first(errors.LocalEntryNotFoundError, ConnectionError)
    if first(errors.GatedRepoError):
        return HubFailure(
            "it is gated and this machine has no access to it",
            f"accept its licence at https://huggingface.co/{_url_path(repo, kind)} and log "
            "in with `hf auth login` (or set HF_TOKEN)",
        )
    if unreachable is not None and constants.is_offline_mode():
        return HubFailure(
            "HF_HUB_OFFLINE is set and it is not in the local cache", offline_fix, unfound=True
        )
    if first(*not_found):
        return HubFailure(
            f"the hub has no {kind} of that name, or it is private",
            f"check {key}, and log in with `hf auth login` if it is private",
            unfound=True,
        )
    if first(errors.RevisionNotFoundError):
        return HubFailure(
            f"the hub has no revision {revision!r} of it", f"check the revision given beside {key}"
        )
    if unreachable is not None:
        reason = f"huggingface.co cannot be reached ({first_line(chain[-1])})"
        return HubFailure(reason, offline_fix, unfound=True)
    damaged = first(SafetensorError, JSONDecodeError, UnicodeDecodeError)
    if damaged is not None:
        return HubFailure(
            f"its copy in the local cache is truncated or corrupt ({first_line(damaged)})",
            f"download it again with `{download} --force-download`",
        )
    return HubFailure(first_line(err), f"check {key}, or {offline_fix}")


def _offline_fix(download: str, kind: str, key: str) -> str:
    """How to work without network: models are read from the hub's cache; a streamed
    dataset never is, so its files must be downloaded and read as local data files."""
    if kind == "model":
        return (
            f"on a machine with network run `{download}`, bring its Hugging Face cache "
            "(~/.cache/huggingface) here, and run with HF_HUB_OFFLINE=1"
        )
    return (
        f"on a machine with network run `{download} --local-dir <folder>`, bring the folder "
        f"here, and set {key} to parquet (or json) with data_files naming its files"
    )


def no_folder_either(name: str) -> str:
    """A clause for a hub id that may have been meant as a folder: one whose first part is
    a folder here (``models/my-llama`` with a ``models`` folder), else nothing."""
    path = Path(os.getcwd(), name)
    if "/" not in name or not path.parent.is_dir():
        return ""
    return f" (and there is no folder {path} either)"


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _url_path(repo: str, kind: str) -> str:
    return repo if kind == "model" else f"{kind}s/{repo}"


def first_line(err: BaseException | str) -> str:
    """An error message cut to one clause: its first line, or its last when the first only
    introduces a list (transformers' "Couldn't instantiate ... from one of:")."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    line = lines[-1] if lines[0].endswith(":") else lines[0]
    return line.rstrip(".:")
