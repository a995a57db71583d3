"""Atomic outputs: a finished name or nothing, and never the loss of what a job did not write."""

from __future__ import annotations

import pytest

from prunescope.errors import UserInputError
from prunescope.io import atomic_path


def test_a_file_appears_only_when_its_block_succeeds(tmp_path):
    out = tmp_path / "a.json"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not out.exists() and not (tmp_path / "a.json.partial").exists()
    with atomic_path(out) as tmp:
        tmp.write_text("whole")
    assert out.read_text() == "whole"


def test_an_earlier_copy_of_the_same_folder_is_replaced(tmp_path):
    out = tmp_path / "sae"
    for version in ("old", "new"):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "cfg.json").write_text(version)
            (tmp / "sae.safetensors").write_text(version)
    assert (out / "cfg.json").read_text() == "new"


def test_a_folder_holding_what_the_job_did_not_write_is_left_alone(tmp_path):
    out = tmp_path / "tokenizer"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(UserInputError, match=r"already exists and holds .*notes\.txt"):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "tokenizer.json").write_text("{}")
    assert (out / "notes.txt").read_text() == "the user's"
    assert not (tmp_path / "tokenizer.partial").exists()


def test_a_name_that_resolves_onto_results_leaves_results_untouched(tmp_path, monkeypatch):
    """A model named '..' would make the tokenizer's output results/tokenizers/.. = results/."""
    monkeypatch.chdir(tmp_path)
    kept = tmp_path / "results/perplexity/tiny/dense.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    with pytest.raises(UserInputError, match="names no file or folder of its own"):
        with atomic_path("results/tokenizers/..") as tmp:
            tmp.mkdir()
    assert kept.read_text() == "{}"
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["perplexity"]


def test_a_model_named_dot_leaves_the_other_models_tokenizers_alone(tmp_path, monkeypatch):
    """results/tokenizers/. is results/tokenizers itself, which holds every model's."""
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "results/tokenizers/tiny/tokenizer.json"
    other.parent.mkdir(parents=True)
    other.write_text("{}")
    with pytest.raises(UserInputError, match=r"already exists and holds .*\(tiny\)"):
        with atomic_path("results/tokenizers/.") as tmp:
            tmp.mkdir()
            (tmp / "tokenizer.json").write_text("{}")
    assert other.read_text() == "{}"


def test_a_strange_name_that_reaches_a_parent_folder_leaves_it_untouched(tmp_path):
    """results/x/../y names results/y, which holds other artifacts: refused, not replaced."""
    (tmp_path / "results/y").mkdir(parents=True)
    (tmp_path / "results/y/other.json").write_text("{}")
    with pytest.raises(UserInputError, match="already exists"):
        with atomic_path(tmp_path / "results/x/../y") as tmp:
            tmp.mkdir()
            (tmp / "mine.json").write_text("{}")
    assert (tmp_path / "results/y/other.json").exists()
