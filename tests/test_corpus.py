"""Corpora: deterministic, non-overlapping splits; token windows; the three sources."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from prunescope.corpus import (
    Document,
    documents_from_config,
    extract_docstrings,
    hf_documents,
    make_windows,
    read_jsonl,
    split_documents,
    split_of,
    stdlib_documents,
    textfile_documents,
    windows_from_jsonl,
    write_jsonl,
)
from prunescope.errors import UserInputError
from prunescope.tinylm import train_bpe_tokenizer

FRACTIONS = {"train": 0.8, "calib": 0.1, "eval": 0.1}


def test_split_fractions_are_respected_and_stable():
    ids = [f"doc{i}" for i in range(4000)]
    assigned = [split_of(i, FRACTIONS, seed=0) for i in ids]
    share = {name: assigned.count(name) / len(ids) for name in FRACTIONS}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["eval"] == pytest.approx(0.1, abs=0.02)
    assert assigned == [split_of(i, FRACTIONS, seed=0) for i in ids]
    assert assigned != [split_of(i, FRACTIONS, seed=1) for i in ids]


def test_fractions_below_one_leave_documents_out():
    assigned = [split_of(f"d{i}", {"eval": 0.25}, seed=0) for i in range(2000)]
    assert set(assigned) == {"eval", None}
    assert assigned.count("eval") / 2000 == pytest.approx(0.25, abs=0.03)


def test_splits_never_overlap_and_adding_a_document_moves_nothing():
    docs = [Document(f"d{i}", f"text {i}") for i in range(300)]
    before = split_documents(docs, FRACTIONS, seed=3)
    after = split_documents([*docs, Document("new", "x")], FRACTIONS, seed=3)
    ids = {name: {d.id for d in split} for name, split in before.items()}
    assert not ids["train"] & ids["eval"] and not ids["train"] & ids["calib"]
    assert not ids["calib"] & ids["eval"]
    assert sum(len(v) for v in ids.values()) == 300
    for name in before:
        assert [d.id for d in after[name] if d.id != "new"] == [d.id for d in before[name]]


def test_shuffle_false_keeps_source_order_and_max_chars_caps():
    docs = [Document(f"d{i}", "abcd") for i in range(50)]
    out = split_documents(docs, {"eval": 1.0}, seed=0, shuffle=False, max_chars=40)
    assert [d.id for d in out["eval"]] == [f"d{i}" for i in range(10)]


def test_stdlib_corpus_is_deterministic_and_excludes_patterns():
    first = [d.id for d in itertools.islice(stdlib_documents(exclude=["test/*"]), 40)]
    again = [d.id for d in itertools.islice(stdlib_documents(exclude=["test/*"]), 40)]
    assert first == again == sorted(first)
    assert not any(i.startswith(("test/", "site-packages/")) for i in first)


def test_docstring_extraction():
    source = '"""Module."""\n\nclass A:\n    """Class."""\n    def f(self):\n        """Fn."""\n'
    assert extract_docstrings(source) == "Module.\n\nClass.\n\nFn."
    assert extract_docstrings("def (:") == ""


def test_textfile_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    docs = list(textfile_documents(["*.txt"], base=tmp_path))
    assert [d.text for d in docs] == ["alpha", "beta"]
    with pytest.raises(FileNotFoundError, match=r"\*\.md"):
        list(textfile_documents(["*.md"], base=tmp_path))


def test_hf_corpus_streams_a_local_dataset(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"body": f"row {i}"}) + "\n" for i in range(20)))
    docs = list(hf_documents("json", data_files=str(path), text_field="body", max_documents=5))
    assert [d.text for d in docs] == [f"row {i}" for i in range(5)]
    with pytest.raises(UserInputError, match=r"has no field 'text' \(its fields: body\)"):
        list(hf_documents("json", data_files=str(path)))
    via_config = documents_from_config(
        "hf", {"dataset": "json", "data_files": str(path), "text_field": "body"}
    )
    assert len(list(via_config)) == 20


def test_jsonl_round_trip(tmp_path):
    docs = [Document("a", "x\ny"), Document("b", "ü")]
    assert write_jsonl(docs, tmp_path / "s.jsonl") == 2
    assert list(read_jsonl(tmp_path / "s.jsonl")) == docs
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        list(read_jsonl(tmp_path / "missing.jsonl"))


def test_make_windows_with_and_without_bos():
    stream = torch.arange(10)
    assert make_windows(stream, 4, bos_id=None).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert make_windows(stream, 4, bos_id=99).tolist() == [
        [99, 0, 1, 2],
        [99, 3, 4, 5],
        [99, 6, 7, 8],
    ]


def test_windows_from_jsonl_refuses_a_too_small_split(tmp_path):
    text = "def f(x):\n    return x + 1\n" * 50
    tokenizer = train_bpe_tokenizer([text], vocab_size=300)
    write_jsonl([Document("a", text)], tmp_path / "s.jsonl")
    windows = windows_from_jsonl(tokenizer, tmp_path / "s.jsonl", context=16, n_tokens=64)
    assert windows.shape == (4, 16)
    assert (windows[:, 0] == tokenizer.bos_token_id).all()
    with pytest.raises(ValueError, match="s.jsonl"):
        windows_from_jsonl(tokenizer, tmp_path / "s.jsonl", context=16, n_tokens=10**6)
