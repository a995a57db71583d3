"""A rule's log file: its output, its logging, and the traceback when the job fails."""

from __future__ import annotations

import logging
import sys

import pytest

from prunescope.errors import UserInputError
from prunescope.runlog import rule_logging


def test_print_logging_and_stderr_all_reach_the_log_file(tmp_path, capsys):
    log_path = tmp_path / "logs" / "rule.log"
    with rule_logging(str(log_path)) as log:
        print("a printed line")
        log.info("a logged line")
        print("a progress bar", file=sys.stderr)
    text = log_path.read_text()
    assert "a printed line" in text and "a logged line" in text and "a progress bar" in text
    assert capsys.readouterr() == ("", "")


def test_a_failing_job_leaves_its_traceback_in_the_log(tmp_path):
    log_path = tmp_path / "rule.log"
    with pytest.raises(RuntimeError, match="NaN in the loss"):
        with rule_logging(str(log_path)):
            raise RuntimeError("NaN in the loss")
    text = log_path.read_text()
    assert "failed" in text and "Traceback" in text and "RuntimeError: NaN in the loss" in text


def test_without_a_log_file_logging_goes_to_the_terminal(capsys):
    with rule_logging(None) as log:
        log.info("to the terminal")
    assert "to the terminal" in capsys.readouterr().err


def test_the_job_s_handlers_are_removed_when_it_ends(tmp_path):
    before = logging.root.handlers[:]
    with rule_logging(str(tmp_path / "rule.log")):
        assert logging.root.handlers != before
    assert logging.root.handlers == before


@pytest.mark.parametrize(
    "error",
    [
        UserInputError("models.tiny.name: the model folder ./m has no config.json"),
        FileNotFoundError(2, "No such file or directory", "results/corpus/x/train.jsonl"),
    ],
)
def test_a_user_error_is_one_sentence_in_the_log_and_on_stderr(tmp_path, capsys, error):
    log_path = tmp_path / "rule.log"
    with pytest.raises(SystemExit) as stop:
        with rule_logging(str(log_path)):
            raise error
    assert stop.value.code == 1
    sentence = (
        str(error)
        if isinstance(error, UserInputError)
        else ("No such file or directory: results/corpus/x/train.jsonl")
    )
    assert capsys.readouterr().err == f"prunescope: {sentence}\n"
    text = log_path.read_text()
    assert sentence in text and "Traceback" not in text
