"""The errors a user can cause, told as one sentence instead of a traceback.

A ``UserInputError`` (or a ``FileNotFoundError``) raised inside a workflow script is a
mistake in the config or in a file the user supplied, not a bug: ``rule_logging`` writes
its message alone to the job's log and to stderr and ends the job with exit status 1, so
Snakemake shows that sentence instead of a stack of library frames.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A config value or a user-supplied file that cannot be used; the message names it."""


USER_ERRORS = (UserInputError, FileNotFoundError)


def listed(names: list[str], shown: int = 3) -> str:
    """The first ``shown`` names for a message, and how many more there are."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


def keyed(key: str | None, sentence: str) -> str:
    """The sentence, led by the config key it is about when there is one."""
    return f"{key}: {sentence}" if key else sentence
