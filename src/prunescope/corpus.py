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
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

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


def textfile_documents(patterns: Iterable[str], base: str | Path = ".") -> Iterator[Document]:
    """Every file matching the glob patterns (relative to ``base``), one document each."""
    paths: set[Path] = set()
    for pattern in patterns:
        matched = sorted(Path(base).glob(pattern))
        if not matched:
            raise FileNotFoundError(f"corpus pattern {pattern!r} matches no file")
        paths.update(p for p in matched if p.is_file())
    for path in sorted(paths):
        yield Document(path.as_posix(), path.read_text(encoding="utf-8", errors="replace"))


def hf_documents(
    dataset: str,
    *,
    config_name: str | None = None,
    hf_split: str = "train",
    text_field: str = "text",
    max_documents: int | None = None,
    data_files: str | list[str] | None = None,
) -> Iterator[Document]:
    """Documents of a Hugging Face dataset, streamed so only what is used is read."""
    import datasets

    stream = datasets.load_dataset(
        dataset, config_name, split=hf_split, streaming=True, data_files=data_files
    )
    for i, row in enumerate(stream):
        if max_documents is not None and i >= max_documents:
            break
        if text_field not in row:
            raise KeyError(f"dataset {dataset!r} has no text field {text_field!r}")
        yield Document(f"{hf_split}:{i}", row[text_field])


def documents_from_config(source: str, options: dict) -> Iterator[Document]:
    """Dispatch on the ``source`` key of a corpus entry in the config."""
    if source == "stdlib":
        return stdlib_documents(options.get("exclude", ()), options.get("content", "source"))
    if source == "textfile":
        return textfile_documents(options["paths"], options.get("base", "."))
    if source == "hf":
        return hf_documents(
            options["dataset"],
            config_name=options.get("config_name"),
            hf_split=options.get("hf_split", "train"),
            text_field=options.get("text_field", "text"),
            max_documents=options.get("max_documents"),
            data_files=options.get("data_files"),
        )
    raise ValueError(f"corpus source {source!r} is not one of stdlib, textfile, hf")


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {str(path)!r} does not exist")
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield Document(row["id"], row["text"])


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
        raise ValueError(
            f"corpus file {str(path)!r} gives only {windows.shape[0]} windows of {context} "
            f"tokens, fewer than the {n_windows} asked for"
        )
    return windows
