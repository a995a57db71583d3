"""Jobs killed mid-write, and the switch that deletes large intermediates once they are used.

Each test works on a copy of the finished smoke run, kills a real Snakemake run with
SIGKILL (Snakemake and its job together, as when a node dies), and checks what the next
run sees and does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import planned_jobs, run_snakemake

pytestmark = pytest.mark.slow

SMOKE = ("--configfile", "configs/smoke.yaml")
CACHE = Path("results/activations/tiny/dense/L1.h5")
SAE = Path("results/sae/tiny/dense/L1/seed0")
SAE_OUTPUTS = ("sae.safetensors", "cfg.json", "metrics.json")


@pytest.fixture
def finished(smoke_run, tmp_path) -> Path:
    """A private copy of the finished smoke run, metadata included."""
    return Path(shutil.copytree(smoke_run, tmp_path / "run", symlinks=True))


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def kill_run_when(work: Path, args: list[str], condition: Callable[[], bool], what: str) -> None:
    """Start ``snakemake ARGS`` in its own process group and SIGKILL the group once
    ``condition`` holds."""
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(condition, run, what)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()


def test_capture_killed_mid_write_is_recomputed_with_exactly_its_dependents(finished, smoke_run):
    (finished / CACHE).unlink()
    plan_before = planned_jobs(run_snakemake("-n", *SMOKE, cwd=finished))
    assert plan_before["capture_activations"] == 1 and "train_local_model" not in plan_before

    partial = finished / CACHE.with_name(CACHE.name + ".partial")
    kill_run_when(
        finished,
        [*SMOKE, str(CACHE)],
        lambda: partial.exists() and partial.stat().st_size > 1_000_000,
        "the cache was half written",
    )
    assert not (finished / CACHE).exists()
    assert planned_jobs(run_snakemake("-n", *SMOKE, cwd=finished)) == plan_before

    run_snakemake("--cores", "2", *SMOKE, cwd=finished)
    assert not partial.exists()
    assert "Nothing to be done" in run_snakemake("-n", *SMOKE, cwd=finished)
    # the recomputed cache and everything after it come out as they did the first time
    for table in ("table2", "table3", "tableB1", "logistic_fit"):
        path = f"results/tables/{table}.csv"
        assert (finished / path).read_bytes() == (smoke_run / path).read_bytes(), table


def test_sae_training_killed_midway_leaves_nothing_and_is_rerun_alone(finished):
    # Long enough training that the kill lands inside the loop, not before or after it.
    config = yaml.safe_load((finished / "configs/smoke.yaml").read_text())
    config["sae"]["steps"] = 3000
    (finished / "long.yaml").write_text(yaml.safe_dump(config))
    long = ("--configfile", "long.yaml")
    target = str(SAE / "metrics.json")
    plan_before = planned_jobs(run_snakemake("-n", *long, cwd=finished))
    assert planned_jobs(run_snakemake("-n", *long, target, cwd=finished)) == {"train_sae": 1}

    log = finished / "results/logs/train_sae/tiny/dense/L1/seed0.log"
    log.unlink()
    kill_run_when(
        finished,
        [*long, target],
        lambda: log.exists() and "step 50: resampled" in log.read_text(errors="replace"),
        "the SAE was 50 steps into training",
    )
    assert not any((finished / SAE / name).exists() for name in SAE_OUTPUTS)
    assert planned_jobs(run_snakemake("-n", *long, target, cwd=finished)) == {"train_sae": 1}
    assert planned_jobs(run_snakemake("-n", *long, cwd=finished)) == plan_before


def test_keep_intermediates_false_deletes_caches_once_read(finished):
    (finished / CACHE).unlink()
    switch = ("--config", "keep_intermediates=false")
    run_snakemake("--cores", "2", *SMOKE, *switch, cwd=finished)
    assert not (finished / CACHE).exists(), "the rerun cache should be gone once its readers ran"
    # caches this run did not make are left alone
    assert (finished / "results/activations/tiny/wanda-0.3/L1.h5").exists()
    assert "Nothing to be done" in run_snakemake("-n", *SMOKE, *switch, cwd=finished)
