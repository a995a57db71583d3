"""Jobs killed mid-write, and the switch that deletes large intermediates once they are used.

Each test works on a copy of the finished smoke run, SIGKILLs the job a real Snakemake
run is running (as when the job's node dies), and checks what the next run sees and does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import planned_jobs, run_snakemake

from prunescope.activations import SETTINGS_ATTR, read_cache_info

pytestmark = pytest.mark.slow

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


def processes_running(script: str) -> Iterator[Path]:
    """The /proc entries of processes whose command line runs ``script``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if script in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                yield entry
        except OSError:
            continue


def job_processes(group: int, script: str) -> list[int]:
    """Processes of the run's process group whose command line runs ``script``."""
    pids = []
    for entry in processes_running(script):
        try:
            if os.getpgid(int(entry.name)) == group:
                pids.append(int(entry.name))
        except ProcessLookupError:
            continue
    return pids


def script_running(work: Path, script: str) -> bool:
    """Whether a job of the run in ``work`` is running ``script`` (jobs run in ``work``)."""
    for entry in processes_running(script):
        try:
            if (entry / "cwd").resolve() == work.resolve():
                return True
        except OSError:
            continue
    return False


def kill_job_when(
    work: Path, args: list[str], script: str, condition: Callable[[], bool], what: str
) -> None:
    """Run ``snakemake ARGS`` and SIGKILL the job running ``script`` once ``condition``
    holds, as when a job's node dies; Snakemake itself lives on and must see the failure.
    Targets go first in ARGS: --configfile takes every word after it."""
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(condition, run, what)
        jobs = job_processes(run.pid, script)
        assert jobs, f"no process runs {script}"
        for pid in jobs:
            os.kill(pid, signal.SIGKILL)
        assert run.wait(timeout=120) != 0, "Snakemake should report the killed job"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def kill_capture_half_written(work: Path, config_args: tuple[str, ...]) -> Path:
    """Kill the capture of ``CACHE`` once 1 MB of it is written; returns its .partial."""
    partial = work / CACHE.with_name(CACHE.name + ".partial")
    kill_job_when(
        work,
        [str(CACHE), *config_args],
        "capture_activations.py",
        lambda: partial.exists() and partial.stat().st_size > 1_000_000,
        "the cache was half written",
    )
    return partial


def edited_smoke(work: Path, name: str, edit: Callable[[dict], None]) -> tuple[str, str]:
    """``--configfile`` arguments for the smoke preset with ``edit`` applied."""
    config = yaml.safe_load((work / "configs/smoke.yaml").read_text())
    edit(config)
    (work / name).write_text(yaml.safe_dump(config))
    return ("--configfile", name)


def test_capture_killed_mid_write_is_recomputed_with_exactly_its_dependents(finished, smoke_run):
    # A cache that is needed again: one of the SAEs trained on it is gone.
    (finished / CACHE).unlink()
    shutil.rmtree(finished / SAE)
    smoke = ("--configfile", "configs/smoke.yaml")
    plan_before = planned_jobs(run_snakemake("-n", *smoke, cwd=finished))
    # both seeds of the condition read the recaptured cache
    assert plan_before["capture_activations"] == 1 and plan_before["train_sae"] == 2
    assert "train_local_model" not in plan_before

    partial = kill_capture_half_written(finished, smoke)
    assert not (finished / CACHE).exists()
    assert planned_jobs(run_snakemake("-n", *smoke, cwd=finished)) == plan_before

    run_snakemake("--cores", "2", *smoke, cwd=finished)
    assert not partial.exists()
    assert "Nothing to be done" in run_snakemake("-n", *smoke, cwd=finished)
    # the recomputed cache and everything after it come out as they did the first time
    for table in ("table2", "table3", "tableB1", "logistic_fit"):
        path = f"results/tables/{table}.csv"
        assert (finished / path).read_bytes() == (smoke_run / path).read_bytes(), table


def test_capture_killed_after_a_config_edit_still_reruns_what_the_edit_reaches(finished):
    # Snakemake deletes a failed job's output and its record, so only the readers' own
    # record of the capture settings keeps the edit alive for the killed condition.
    edited = edited_smoke(finished, "edited.yaml", lambda c: c["activations"].update(batch_size=16))
    target = "results/tables/tableB1.csv"
    plan_before = planned_jobs(run_snakemake("-n", target, *edited, cwd=finished))
    # every condition's cache; the feature bases follow the capture settings too, and
    # with them the two feature prunes
    assert plan_before["capture_activations"] == 5 and plan_before["train_sae"] == 10
    assert plan_before["prune_model"] == 2

    kill_capture_half_written(finished, edited)
    assert not (finished / CACHE).exists()
    assert planned_jobs(run_snakemake("-n", target, *edited, cwd=finished)) == plan_before

    run_snakemake("--cores", "2", target, *edited, cwd=finished)
    assert "Nothing to be done" in run_snakemake("-n", target, *edited, cwd=finished)
    for cache in (finished / "results/activations").rglob("*.h5"):
        recorded = json.loads(read_cache_info(cache)["attrs"][SETTINGS_ATTR])
        assert recorded["activations"]["batch_size"] == 16, cache


def test_pruning_killed_after_a_pruning_edit_still_reruns_what_the_edit_reaches(finished):
    # The pruned checkpoint's readers carry its lineage among their params: without it,
    # the killed condition's old caches, SAEs and tables would stand as if current.
    edited = edited_smoke(
        finished, "edited.yaml", lambda c: c["pruning"]["calibration"].update(n_tokens=1024)
    )
    plan_before = planned_jobs(run_snakemake("-n", *edited, cwd=finished))
    # Wanda and the two feature methods read calibration text; magnitude does not
    assert plan_before["prune_model"] == 3 and plan_before["capture_activations"] == 3
    assert plan_before["evaluate_perplexity"] == 3 and plan_before["train_sae"] == 6

    checkpoint = "results/models/tiny/wanda-0.3"
    kill_job_when(
        finished,
        [checkpoint, *edited],
        "prune_model.py",
        lambda: script_running(finished, "prune_model.py"),
        "the pruning job started",
    )
    assert not (finished / checkpoint).exists()
    assert planned_jobs(run_snakemake("-n", *edited, cwd=finished)) == plan_before


def test_align_hessian_killed_after_a_damping_edit_still_reruns_what_the_edit_reaches(finished):
    # The pruning jobs read the Hessian and nothing else the edit touches: only the
    # Hessian's lineage among their params keeps the edit alive for the killed trial.
    edited = edited_smoke(
        finished, "edited.yaml", lambda c: c["align"]["hessian"].update(damping=0.1)
    )
    plan_before = planned_jobs(run_snakemake("-n", *edited, cwd=finished))
    assert plan_before["estimate_align_hessian"] == 2 and plan_before["prune_align_nets"] == 4
    assert "train_align_net" not in plan_before and "solve_align_mip" not in plan_before

    hessian = "results/align/nets/dnf16/trial0/hessian.npy"
    kill_job_when(
        finished,
        [hessian, *edited],
        "estimate_align_hessian.py",
        lambda: script_running(finished, "estimate_align_hessian.py"),
        "the Hessian job started",
    )
    assert not (finished / hessian).exists()
    assert planned_jobs(run_snakemake("-n", *edited, cwd=finished)) == plan_before


def test_sae_training_killed_midway_leaves_nothing_and_is_rerun_alone(finished):
    # Long enough training that the kill lands inside the loop, not before or after it.
    long = edited_smoke(finished, "long.yaml", lambda c: c["sae"].update(steps=3000))
    target = str(SAE / "metrics.json")
    plan_before = planned_jobs(run_snakemake("-n", *long, cwd=finished))
    assert planned_jobs(run_snakemake("-n", target, *long, cwd=finished)) == {"train_sae": 1}

    log = finished / "results/logs/train_sae/tiny/dense/L1/seed0.log"
    log.unlink()
    kill_job_when(
        finished,
        [target, *long],
        "train_sae.py",
        lambda: log.exists() and "step 50: resampled" in log.read_text(errors="replace"),
        "the SAE was 50 steps into training",
    )
    assert not any((finished / SAE / name).exists() for name in SAE_OUTPUTS)
    assert planned_jobs(run_snakemake("-n", target, *long, cwd=finished)) == {"train_sae": 1}
    assert planned_jobs(run_snakemake("-n", *long, cwd=finished)) == plan_before


def test_keep_intermediates_false_deletes_caches_once_read(finished):
    edited = edited_smoke(finished, "edited.yaml", lambda c: c["activations"].update(batch_size=16))
    switch = ("--config", "keep_intermediates=False")
    target = "results/tables/tableB1.csv"
    plan = planned_jobs(run_snakemake("-n", target, *edited, *switch, cwd=finished))
    assert plan["capture_activations"] == 5 and plan["train_sae"] == 10
    run_snakemake("--cores", "2", target, *edited, *switch, cwd=finished)
    caches = sorted((finished / "results/activations").rglob("*.h5"))
    assert caches == [], f"caches should be gone once the SAEs read them: {caches}"
    assert (finished / SAE / "metrics.json").is_file()
    assert "Nothing to be done" in run_snakemake("-n", target, *edited, *switch, cwd=finished)
