"""What every workflow script does first: log to its rule's log file and size its thread pool."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from prunescope.errors import USER_ERRORS
from prunescope.gpus import job_gpus


@contextlib.contextmanager
def rule_logging(log_path: str | None, threads: int = 1, gpus: int = 0) -> Iterator[logging.Logger]:
    """Send stdout, stderr (tqdm bars included) and ``logging`` to ``log_path``.

    Also caps torch's intra-op threads at the rule's ``threads`` so parallel
    jobs do not oversubscribe the cores Snakemake handed out, and leases the
    rule's ``gpus`` devices for the whole job (see ``prunescope.gpus``).

    A mistake the user can fix (``prunescope.errors.USER_ERRORS``) ends the job with its
    one sentence in the log and on stderr, and exit status 1, instead of a traceback.
    """
    import torch

    torch.set_num_threads(max(int(threads), 1))
    terminal = sys.stderr
    try:
        with _logged_job(log_path, gpus) as logger:
            yield logger
    except USER_ERRORS as err:
        print(f"prunescope: {_sentence(err)}", file=terminal, flush=True)
        raise SystemExit(1) from None


def _sentence(err: BaseException) -> str:
    """An OSError's message without its errno prefix; any other error's message as is."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"{err.strerror}: {err.filename}"
    return str(err)


@contextlib.contextmanager
def _logged_job(log_path: str | None, gpus: int) -> Iterator[logging.Logger]:
    with contextlib.ExitStack() as stack:
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            stream = stack.enter_context(open(log_path, "w", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(stream))
            stack.enter_context(contextlib.redirect_stderr(stream))
            handler = logging.StreamHandler(stream)
        else:
            handler = logging.StreamHandler()
        stack.enter_context(_root_logging_to(handler))
        logger = logging.getLogger("prunescope")
        try:
            with job_gpus(int(gpus)):
                yield logger
        except USER_ERRORS as err:
            logger.error("%s", _sentence(err))
            raise
        except BaseException:
            # Without a log file the traceback reaches the terminal anyway.
            if log_path:
                logger.exception("failed")
            raise


@contextlib.contextmanager
def _root_logging_to(handler: logging.Handler) -> Iterator[None]:
    """Send every INFO record to ``handler`` alone for the block, then put back the
    handlers the job found (none is left writing to a closed log file)."""
    root = logging.getLogger()
    found, level = root.handlers[:], root.level
    for other in found:
        root.removeHandler(other)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for other in found:
            root.addHandler(other)
        root.setLevel(level)


def export_to_jobs(library: str | os.PathLike) -> None:
    """Put the library on the PYTHONPATH that every job's script inherits.

    Jobs then import ``prunescope`` whether they run in the project's venv or
    in an environment that Snakemake built from ``envs/`` with ``--use-conda``.
    """
    paths = [str(library), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
