"""Shared by the workflow-level tests: running Snakemake on a copy of the workflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.dag import job_counts as planned_jobs  # noqa: F401  (re-exported to the tests)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml")
WORKFLOW_FOLDERS = ("workflow", "scripts", "configs", "envs")


def run_snakemake(*args: str, cwd: Path = ROOT, check: bool = True, env=None) -> str:
    """Snakemake's combined output; with ``check``, an AssertionError carrying its tail."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
    )
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{output[-4000:]}")
    return output


def copy_workflow(destination: Path) -> Path:
    """A runnable copy of the workflow (no results) in ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        shutil.copy(ROOT / name, destination / name)
    for name in WORKFLOW_FOLDERS:
        shutil.copytree(ROOT / name, destination / name)
    return destination


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A copy of the workflow run to completion on the smoke preset."""
    work = copy_workflow(tmp_path_factory.mktemp("smoke"))
    run_snakemake("--cores", "2", "--configfile", "configs/smoke.yaml", cwd=work)
    return work


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module of tests on tiny tensors, then as before."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
