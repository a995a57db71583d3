"""Text corpora, their train / calibration / eval splits, and token windows.

Three sources share one output format (a JSON-lines file per split, one
document per line):

- ``stdlib``: the running Python's standard library sources, so the default
  workflow has text on any machine with no network;
- ``textfile``: the user's own text files, selected by glob patterns;
- ``hf``: a Hugging Face dataset read with ``datasets`` in streaming mode
  (FineWeb-Edu, WikiText-2, ...).

Local documents are assigned to a split by a seeded hash of their name, so
the splits never overlap and adding a file never moves another one.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from prunescope.artifacts import damaged, require_file
from prunescope.errors import UserInputError, keyed
from prunescope.io import atomic_path

SPLITS = ("train", "calib", "eval")


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def split_of(doc_id: str, fractions: dict[str, float], seed: int) -> str | None:
    """The split a document belongs to: a seeded hash of its id mapped to [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name in SPLITS:
        edge += fractions.get(name, 0.0)
        if u < edge:
            return name
    return None  # fractions summing below 1 leave the rest of the documents out


def hash_order(doc_id: str, seed: int) -> bytes:
    """A seeded but arbitrary order, so taking the first N tokens is not alphabetical."""
    return hashlib.sha256(f"order:{seed}:{doc_id}".encode()).digest()


def stdlib_documents(exclude: Iterable[str] = (), content: str = "source") -> Iterator[Document]:
    """Python source files of the running interpreter's standard library.

    ``content`` is ``source`` (whole files, docstrings included) or
    ``docstrings`` (only module, class and function docstrings: prose).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    patterns = ["site-packages/*", *exclude]
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, p) for p in patterns):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if content == "docstrings":
            text = extract_docstrings(text)
        if text.strip():
            yield Document(rel, text)


def extract_docstrings(source: str) -> str:
    """All module, class and function docstrings of a source file, in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a few stdlib files are deliberately invalid test inputs
        return ""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds)]
    return "\n\n".join(d for d in docs if d)


def textfile_documents(
    patterns: Iterable[str], base: str | Path = ".", key: str | None = None
) -> Iterator[Document]:
    """Every file matching the glob patterns (relative to ``base``), one document each.

    A pattern matching no file, or only folders, is refused: either would leave the corpus
    without the text the user meant. ``key`` names the patterns in the config.
    """
    paths: set[Path] = set()
    for pattern in patterns:
        matched = _glob(base, pattern, key)
        if not matched:
            where = f" (relative to {Path(base).resolve()})"
            raise FileNotFoundError(
                keyed(key, f"corpus pattern {pattern!r} matches no file{where}")
            )
        files = [p for p in matched if p.is_file()]
        if not files:
            inside = f"{pattern.rstrip('/')}/**/*"
            problem = (
                f"corpus pattern {pattern!r} matches only folders; write {inside!r} for their files"
            )
            raise UserInputError(keyed(key, problem))
        paths.update(files)
    for path in sorted(paths):
        yield Document(path.as_posix(), path.read_text(encoding="utf-8", errors="replace"))


def _glob(base: str | Path, pattern: str, key: str | None) -> list[Path]:
    """``Path.glob`` from ``base``, which also takes an absolute or ``~`` pattern."""
    pattern = os.path.expanduser(pattern)
    root = Path(base)
    if os.path.isabs(pattern):
        root = Path(Path(pattern).anchor)
        pattern = str(Path(pattern).relative_to(root))
    try:
        return sorted(root.glob(pattern))
    except ValueError as err:  # an empty pattern, or one with "**" inside a name
        raise UserInputError(
            keyed(key, f"corpus pattern {pattern!r} is not a glob ({err})")
        ) from err


# Dataset names that are builders reading the user's own data_files, not hub repositories.
_LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


def hf_documents(
    dataset: str,
    *,
    config_name: str | None = None,
    hf_split: str = "train",
    text_field: str = "text",
    max_documents: int | None = None,
    data_files: str | list[str] | None = None,
    key: str | None = None,
) -> Iterator[Document]:
    """Documents of a Hugging Face dataset, streamed so only what is used is read.

    A dataset that cannot be reached or read, and rows without ``text_field``, are refused
    in one sentence naming the dataset and, given ``key`` (``corpora.<name>``), the config key.
    """
    import datasets

    try:
        stream = datasets.load_dataset(
            dataset, config_name, split=hf_split, streaming=True, data_files=data_files
        )
        for i, row in enumerate(stream):
            if max_documents is not None and i >= max_documents:
                break
            if text_field not in row:
                fields = ", ".join(sorted(row)) or "none"
                problem = (
                    f"corpus dataset {dataset} has no field {text_field!r} (its fields: {fields})"
                )
                raise UserInputError(keyed(_sub(key, "text_field"), problem))
            text = row[text_field]
            if text is None:  # a missing value, common in hub datasets: no document
                continue
            if not isinstance(text, str):
                value = repr(text)[:40]
                problem = f"corpus dataset {dataset} row {i} has the value {value}, not text"
                raise UserInputError(keyed(_sub(key, "text_field"), problem))
            yield Document(f"{hf_split}:{i}", text)
    except UserInputError:
        raise
    except (ValueError, OSError, StopIteration, datasets.exceptions.DatasetsError) as err:
        raise _dataset_error(err, dataset, key) from err


def _dataset_error(err: BaseException, dataset: str, key: str | None) -> UserInputError:
    """One sentence for a dataset ``datasets`` could not open or read."""
    from prunescope.hub import first_line, hub_errors, hub_failure

    detail = first_line(err) if str(err).strip() else "it found no data"
    local = dataset in _LOCAL_BUILDERS or dataset.startswith(("/", "~", "./", "../"))
    if local or Path(dataset).expanduser().exists() or not isinstance(err, hub_errors()):
        problem = f"corpus dataset {dataset} could not be read ({detail})"
        return UserInputError(keyed(key, f"{problem}; check the settings of {key or 'the corpus'}"))
    name_key = _sub(key, "dataset")
    failure = hub_failure(err, repo=dataset, kind="dataset", key=name_key or "the dataset name")
    sentence = f"corpus dataset {dataset} could not be downloaded: {failure.reason}; {failure.fix}"
    return UserInputError(keyed(name_key, sentence))


def _sub(key: str | None, field: str) -> str | None:
    return f"{key}.{field}" if key else None


def documents_from_config(source: str, options: dict, key: str | None = None) -> Iterator[Document]:
    """Dispatch on the ``source`` key of a corpus entry in the config (``key``, e.g.
    ``corpora.web``, names the entry in errors); a source that gives no document is refused."""
    if source == "stdlib":
        docs = stdlib_documents(options.get("exclude", ()), options.get("content", "source"))
    elif source == "textfile":
        docs = textfile_documents(options["paths"], options.get("base", "."), _sub(key, "paths"))
    elif source == "hf":
        docs = hf_documents(
            options["dataset"],
            config_name=options.get("config_name"),
            hf_split=options.get("hf_split", "train"),
            text_field=options.get("text_field", "text"),
            max_documents=options.get("max_documents"),
            data_files=options.get("data_files"),
            key=key,
        )
    else:
        raise UserInputError(f"corpus source {source!r} is not one of stdlib, textfile, hf")
    return _not_empty(docs, key)


def _not_empty(docs: Iterator[Document], key: str | None) -> Iterator[Document]:
    empty = True
    for doc in docs:
        empty = False
        yield doc
    if empty:
        raise UserInputError(keyed(key, "the corpus has no documents; check its source settings"))


def split_documents(
    docs: Iterable[Document],
    fractions: dict[str, float],
    seed: int,
    *,
    shuffle: bool = True,
    max_chars: int | None = None,
) -> dict[str, list[Document]]:
    """Assign documents to splits; optionally put each split in a seeded order.

    ``max_chars`` caps each split's total size (after ordering), so a huge
    streamed dataset is cut the same way every time.
    """
    out: dict[str, list[Document]] = {name: [] for name in SPLITS}
    for doc in docs:
        name = split_of(doc.id, fractions, seed)
        if name is not None:
            out[name].append(doc)
    for name, split_docs in out.items():
        if shuffle:
            split_docs.sort(key=lambda d: hash_order(d.id, seed))
        if max_chars is not None:
            out[name] = _cap_chars(split_docs, max_chars)
    return out


def require_documents(
    splits: dict[str, list[Document]], fractions: dict[str, float], key: str | None = None
) -> None:
    """Refuse a split that the config gives a share of the documents but that got none.

    With a handful of documents a 10% split is often empty, and the stage reading it would
    fail much later, far from the cause.
    """
    total = sum(len(docs) for docs in splits.values())
    for name in SPLITS:
        if fractions.get(name, 0.0) > 0 and not splits[name]:
            raise UserInputError(
                keyed(
                    key,
                    f"the corpus gives its {name} split no document ({total} documents in "
                    f"all); add text or change the fractions",
                )
            )


def _cap_chars(docs: list[Document], max_chars: int) -> list[Document]:
    kept, total = [], 0
    for doc in docs:
        if total >= max_chars:
            break
        kept.append(doc)
        total += len(doc.text)
    return kept


def write_jsonl(docs: Iterable[Document], path: str | Path) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"id": doc.id, "text": doc.text}) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[Document]:
    """The documents of a split file written by ``write_jsonl``.

    A line that is not JSON, or not an object with string ``id`` and ``text``, is refused
    naming the file and line; so is a last line without its newline, which ``write_jsonl``
    always writes: the file was cut short exactly at the end of a document.
    """
    path = require_file(path, "corpus file")
    # Read as bytes and decode line by line, so that bytes which are not UTF-8 are found on
    # their own line (a text-mode file decodes ahead, in chunks of many lines).
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            yield _document(path, number, line)


def _document(path: Path, number: int, raw: bytes) -> Document:
    where = f"line {number}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise damaged("corpus file", path, f"{where} is not UTF-8 text ({err.reason})") from err
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        # json's own position says "line 1": each line is parsed alone
        problem = f"{where} is not valid JSON ({err.msg.removesuffix(' at')} at column {err.colno})"
        raise damaged("corpus file", path, problem) from err
    if not line.endswith("\n"):
        raise damaged("corpus file", path, f"{where} has no newline, so the file is cut short")
    if not isinstance(row, dict):
        raise damaged("corpus file", path, f"{where} is not a JSON object")
    for field in ("id", "text"):
        if not isinstance(row.get(field), str):
            raise damaged("corpus file", path, f"{where} has no {field!r} string")
    return Document(row["id"], row["text"])


def token_stream(
    tokenizer, docs: Iterable[Document], max_tokens: int | None = None, separator: str = "\n\n"
) -> torch.Tensor:
    """Concatenate tokenised documents (no special tokens), stopping once ``max_tokens`` is reached.

    Documents are joined by ``separator`` text so windows may span documents,
    as in the usual packed language-model data.
    """
    pieces: list[list[int]] = []
    total = 0
    for doc in docs:
        ids = tokenizer(doc.text + separator, add_special_tokens=False)["input_ids"]
        pieces.append(ids)
        total += len(ids)
        if max_tokens is not None and total >= max_tokens:
            break
    flat = [t for ids in pieces for t in ids]
    if max_tokens is not None:
        flat = flat[:max_tokens]
    return torch.tensor(flat, dtype=torch.long)


def make_windows(stream: torch.Tensor, context: int, bos_id: int | None) -> torch.Tensor:
    """Cut a token stream into non-overlapping windows of ``context`` tokens.

    With a BOS token each window is BOS followed by ``context - 1`` text
    tokens, the way the model saw text in training.
    """
    body = context - 1 if bos_id is not None else context
    n = stream.numel() // body
    windows = stream[: n * body].view(n, body)
    if bos_id is not None:
        windows = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), windows], dim=1)
    return windows


def windows_from_jsonl(
    tokenizer, path: str | Path, context: int, n_tokens: int, use_bos: bool = True
) -> torch.Tensor:
    """``n_tokens`` worth of windows (rounded down to whole windows) from a split file.

    Raises if the split is too small, naming the file, rather than silently
    caching fewer tokens than the config asks for.
    """
    bos_id = tokenizer.bos_token_id if use_bos else None
    body = context - 1 if bos_id is not None else context
    n_windows = max(n_tokens // context, 1)
    stream = token_stream(tokenizer, read_jsonl(path), max_tokens=n_windows * body)
    windows = make_windows(stream, context, bos_id)
    if windows.shape[0] < n_windows:
        raise UserInputError(
            f"corpus file {str(path)!r} gives only {windows.shape[0]} windows of {context} "
            f"tokens, fewer than the {n_windows} asked for"
        )
    return windows
