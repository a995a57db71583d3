"""Where an SAE's files are: a local path, or a folder of a Hugging Face hub repository whose
files are downloaded through the hub cache; and the errors that name the SAE."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prunescope.artifacts import CorruptFileError
from prunescope.errors import UserInputError, keyed, listed
from prunescope.pretrained.detect import CONFIG_FILES, WEIGHT_FILES

_REBUILD = "; delete it and rerun"
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class SAESource:
    """Where an SAE's files came from: ``local`` is the weights file or folder here; a hub
    SAE also has its repository, the path inside it, the requested revision and the commit
    its files were taken from."""

    local: Path
    repo: str | None = None
    path: str | None = None
    revision: str | None = None
    commit: str | None = None

    def describe(self) -> str:
        if self.repo is None:
            return str(self.local)
        at = f"@{self.revision}" if self.revision else ""
        return f"hub repo {self.repo}{at} path {self.path or '/'}"

    def to_dict(self) -> dict:
        """JSON-ready provenance: the hub coordinates when there are any, and the local path."""
        keys = ("repo", "path", "revision", "commit")
        hub = {name: getattr(self, name) for name in keys if getattr(self, name) is not None}
        return {**hub, "local": str(self.local)}


def resolve_sae_source(spec, key: str | None = None) -> SAESource:
    """The files of the SAE that ``spec`` names: a local file or folder path, or a mapping
    ``{repo: ..., path: ..., revision: optional}`` naming a folder (or weights file) in a
    Hugging Face hub repository, whose files are downloaded through the hub cache.

    Only the files an SAE needs are downloaded (its config and one weights file), never the
    whole repository: Gemma Scope repositories hold hundreds of gigabytes.
    """
    with led_by_key(key):
        if isinstance(spec, str | os.PathLike):
            return SAESource(local=_local_path(spec))
        if isinstance(spec, dict):
            repo, path, revision = _hub_spec(spec)
            weights = _download_sae_files(repo, path, revision)
            return SAESource(weights, repo, path, revision, _commit_of(weights))
        raise UserInputError(
            f"SAE source {spec!r} is neither a path nor a mapping {{repo: ..., path: ...}}"
        )


def _local_path(spec: str | os.PathLike) -> Path:
    path = Path(spec).expanduser()
    if path.exists():
        return path
    looks_like_repo = isinstance(spec, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", spec)
    hint = f" (for a hub repository write {{repo: {spec}, path: <folder>}})"
    raise FileNotFoundError(f"SAE {path} does not exist{hint if looks_like_repo else ''}")


def _hub_spec(spec: dict) -> tuple[str, str, str | None]:
    """(repo, path inside it, revision) of a hub spec, refusing anything else in it."""
    unknown = sorted(set(spec) - {"repo", "path", "revision"})
    if unknown:
        raise UserInputError(
            f"SAE source {spec!r} has the keys {listed(unknown)}; a hub SAE takes repo, "
            "path and an optional revision"
        )
    repo, path, revision = spec.get("repo"), spec.get("path", ""), spec.get("revision")
    if not isinstance(repo, str) or not repo:
        raise UserInputError(f"SAE source {spec!r} names no repo")
    if not isinstance(path, str) or (revision is not None and not isinstance(revision, str)):
        raise UserInputError(f"SAE source {spec!r}: path and revision must be strings")
    return repo, path.strip("/"), revision


def _download_sae_files(repo: str, path: str, revision: str | None) -> Path:
    """The weights file of the SAE at ``path`` in ``repo``, downloaded with the configs
    beside it (each absent one skipped); a path naming a weights file is taken as given."""
    from prunescope.hub import hub_errors

    folder = sae_folder_in_repo(path)
    candidates = [path] if folder != path else [_join(folder, name) for name in WEIGHT_FILES]
    try:
        weights = _first_downloaded(repo, candidates, revision)
        configs = CONFIG_FILES if weights is not None else ()
        for name in configs:
            _optional_download(repo, _join(folder, name), revision, [])
    except hub_errors() as err:
        raise _hub_sentence(err, repo, folder, revision) from err
    if weights is None:
        at = f" at revision {revision}" if revision else ""
        raise UserInputError(
            f"hub repo {repo}{at} holds no SAE weights under {path or '/'!r} (none of "
            f"{', '.join(candidates)}); check the path, a folder in that repository"
        )
    return Path(weights)


def _first_downloaded(repo: str, filenames: list[str], revision: str | None) -> str | None:
    """The local path of the first of ``filenames`` that ``repo`` has, or None. Offline (or
    with the hub unreachable) a miss may only mean "not in the cache", so when nothing was
    found that miss is raised, to be told as such."""
    not_cached: list[BaseException] = []
    for filename in filenames:
        local = _optional_download(repo, filename, revision, not_cached)
        if local is not None:
            return local
    if not_cached:
        raise not_cached[0]
    return None


def sae_folder_in_repo(path: str) -> str:
    """The folder of an SAE in a hub repository: ``path`` itself, or the folder of the
    weights file it names."""
    if not path.endswith((".npz", ".safetensors")):
        return path
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _optional_download(
    repo: str, filename: str, revision: str | None, not_cached: list[BaseException]
) -> str | None:
    """The local path of one file of ``repo``, or None when the hub (or, offline, the
    cache) has no such file; a cache miss is noted in ``not_cached``."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return huggingface_hub.hf_hub_download(repo, filename, revision=revision)
    except LocalEntryNotFoundError as err:
        not_cached.append(err)
    except EntryNotFoundError:
        pass
    return None


def _hub_sentence(
    err: BaseException, repo: str, folder: str, revision: str | None
) -> UserInputError:
    """``hub.hub_failure``'s sentence, with its download command narrowed to the SAE's own
    folder: the whole repository of a Gemma Scope release is hundreds of gigabytes."""
    from prunescope.hub import hub_failure

    failure = hub_failure(err, repo=repo, kind="model", key="the SAE source", revision=revision)
    whole = f"hf download {repo}"
    narrowed = f"{whole} --include '{_join(folder, '*')}'"
    fix = failure.fix.replace(f"`{whole}", f"`{narrowed}")
    at = f" at revision {revision}" if revision else ""
    return UserInputError(
        f"hub SAE {repo}{at} path {folder or '/'} could not be downloaded: {failure.reason}; {fix}"
    )


def _commit_of(path: Path) -> str | None:
    """The commit a file in the hub cache belongs to (``.../snapshots/<commit>/...``)."""
    parts = path.parts
    for index, part in enumerate(parts[:-1]):
        if part == "snapshots" and _COMMIT.fullmatch(parts[index + 1]):
            return parts[index + 1]
    return None


@contextlib.contextmanager
def led_by_key(key: str | None) -> Iterator[None]:
    """Errors about the SAE, led by the config key that named it when there is one."""
    try:
        yield
    except (UserInputError, FileNotFoundError) as err:
        if key is None or str(err).startswith(f"{key}: "):
            raise
        raise type(err)(keyed(key, str(err))) from err


@contextlib.contextmanager
def corruption_told_for(source: SAESource) -> Iterator[None]:
    """A damaged file is the user's own download, not a file a rule will rewrite: the
    remedy is a fresh copy (from the hub, forced), not "delete it and rerun"."""
    try:
        yield
    except CorruptFileError as err:
        text = str(err).removesuffix(_REBUILD)
        raise CorruptFileError(f"{text}; {_fresh_copy(source)}") from err


def _fresh_copy(source: SAESource) -> str:
    if source.repo is None:
        return "replace it with a complete copy of the SAE"
    pattern = _join(sae_folder_in_repo(source.path or ""), "*")
    revision = f" --revision {source.revision}" if source.revision else ""
    return (
        f"download it again with `hf download {source.repo} --include '{pattern}'{revision} "
        "--force-download`"
    )
