"""The smoke preset through a live SLURM cluster, with the profile filled in as the README says.

Needs ``tests/slurm/local-cluster.sh start`` (or any SLURM whose default partition takes
the jobs) and ``make install-slurm``. Skipped without them, except in CI, where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import copy_workflow, run_snakemake

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# Every output that is a result, not a record of how long something took.
RESULT_FOLDERS = (
    "results/tables",
    "results/align/tables",
    "results/figures",
    "results/align/figures",
)


def _default_partition() -> str | None:
    if shutil.which("sinfo") is None:
        return None
    result = subprocess.run(
        ["sinfo", "--noheader", "--format=%P %t"], capture_output=True, text=True, timeout=30
    )
    for line in result.stdout.splitlines():
        partition, state = line.split()
        if partition.endswith("*") and state in {"idle", "mix", "alloc"}:
            return partition.rstrip("*")
    return None


def fill_in_profile(profile: Path, partition: str) -> None:
    """What the README asks of a user: their partition, and no account on this cluster."""
    text = profile.read_text()
    text = text.replace("YOUR_PARTITION", partition)
    text = re.sub(r"\n  slurm_account: .*", "", text)
    text = text.replace("# slurm-no-account: true", "slurm-no-account: true")
    profile.write_text(text)


def gpu_rules(workflow: Path) -> set[str]:
    rules = set()
    for rule_file in (workflow / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\nrule ", rule_file.read_text())[1:]:
            if re.search(r"\n\s+gpu=1,", block):
                rules.add(block.split(":", 1)[0])
    return rules


@pytest.fixture(scope="session")
def slurm_run(tmp_path_factory) -> tuple[Path, str]:
    partition = _default_partition()
    plugin = importlib.util.find_spec("snakemake_executor_plugin_slurm")
    if partition is None or plugin is None:
        reason = "no SLURM partition answers or the SLURM plugin is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: .ci/run starts tests/slurm/local-cluster.sh")
        pytest.skip(reason)
    work = copy_workflow(tmp_path_factory.mktemp("slurm"))
    fill_in_profile(work / "workflow/profiles/slurm/config.yaml", partition)
    out = run_snakemake(
        "--profile",
        "workflow/profiles/slurm",
        "--configfile",
        "configs/smoke.yaml",
        # No accounting database here: poll squeue, early and often.
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        cwd=work,
    )
    return work, out


def submitted_jobs(output: str) -> dict[str, list[str]]:
    """SLURM job ids per rule, from Snakemake's 'submitted with SLURM jobid' lines."""
    jobs: dict[str, list[str]] = {}
    pattern = r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_([a-z0-9_]+)/"
    for job_id, rule in re.findall(pattern, output):
        jobs.setdefault(rule, []).append(job_id)
    return jobs


def test_every_job_ran_on_slurm_and_gpu_rules_asked_for_a_gpu(slurm_run):
    work, output = slurm_run
    jobs = submitted_jobs(output)
    total = int(re.findall(r"(\d+) of (\d+) steps \(100%\) done", output)[-1][1])
    # `all` has no job of its own to submit
    assert sum(map(len, jobs.values())) == total - 1
    gpu = gpu_rules(work)
    assert {"train_sae", "capture_activations", "prune_model"} <= gpu
    for rule, ids in jobs.items():
        details = subprocess.run(
            ["scontrol", "show", "job", ids[0]], capture_output=True, text=True
        ).stdout
        assert "JobState=COMPLETED" in details, (rule, details)
        asked_for_gpu = "gres:gpu:1" in details
        assert asked_for_gpu == (rule in gpu), (rule, details)


def test_slurm_run_equals_a_local_run_byte_for_byte(slurm_run, smoke_run):
    """Same config and seeds, another executor and machine layout: identical results."""
    work, _ = slurm_run
    compared = 0
    for folder in RESULT_FOLDERS:
        local_files = sorted(p.relative_to(smoke_run) for p in (smoke_run / folder).rglob("*"))
        slurm_files = sorted(p.relative_to(work) for p in (work / folder).rglob("*"))
        assert local_files == slurm_files, folder
        for relative in local_files:
            if (smoke_run / relative).is_file():
                local = (smoke_run / relative).read_bytes()
                assert local == (work / relative).read_bytes(), f"{relative} differs"
                compared += 1
    assert compared > 50
