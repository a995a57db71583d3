"""The GPU-slot lease, with fake device lists on a CPU machine."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prunescope.gpus import candidate_devices, job_gpus, lease_devices, try_lock

ROOT = Path(__file__).resolve().parents[1]


def test_candidates_honour_an_existing_visible_list():
    assert candidate_devices({}, installed=3) == ["0", "1", "2"]
    assert candidate_devices({"CUDA_VISIBLE_DEVICES": "4, 6"}, installed=8) == ["4", "6"]
    assert candidate_devices({"CUDA_VISIBLE_DEVICES": ""}, installed=8) == []
    assert candidate_devices({}, installed=0) == []


def test_nested_leases_get_distinct_devices_and_give_them_back(tmp_path):
    devices = ["0", "1", "2"]
    with lease_devices(1, devices, tmp_path) as first:
        with lease_devices(2, devices, tmp_path) as second:
            assert first == ["0"] and second == ["1", "2"]
    with lease_devices(3, devices, tmp_path) as all_three:
        assert all_three == devices


def test_asking_for_more_devices_than_visible_is_refused(tmp_path):
    with pytest.raises(ValueError, match="asks for 2 GPU.*only 1 are visible: 7"):
        with lease_devices(2, ["7"], tmp_path):
            pass


def _hold(lock_dir: str, devices: list[str], seconds: float, holders, queue) -> None:
    with lease_devices(1, devices, lock_dir, poll_seconds=0.01) as leased:
        start = time.monotonic()
        # The first holders wait until every device is leased, so a slowly
        # spawning process cannot make the jobs run one after another.
        with holders.get_lock():
            holders.value += 1
        while holders.value < len(devices) and time.monotonic() < start + 60:
            time.sleep(0.01)
        time.sleep(seconds)
        queue.put((leased[0], start, time.monotonic()))


def test_concurrent_jobs_never_share_a_device(tmp_path):
    devices = ["0", "1", "2"]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    holders = context.Value("i", 0)
    jobs = [
        context.Process(target=_hold, args=(str(tmp_path), devices, 0.3, holders, queue))
        for _ in range(7)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
        assert job.exitcode == 0
    spans = [queue.get() for _ in jobs]
    assert {device for device, _, _ in spans} == set(devices)
    for i, (device, start, end) in enumerate(spans):
        for other, other_start, other_end in spans[i + 1 :]:
            if device == other:
                assert end <= other_start or other_end <= start, (device, spans)


def test_a_killed_job_releases_its_device(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from prunescope.gpus import lease_devices\n"
            f"with lease_devices(1, ['0'], {str(tmp_path)!r}):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert try_lock(tmp_path, "0") is None
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    handle = try_lock(tmp_path, "0")
    assert handle is not None
    os.close(handle)


def test_job_gpus_narrows_visible_devices(tmp_path):
    environ = {"CUDA_VISIBLE_DEVICES": "3,5", "PRUNESCOPE_GPU_LOCK_DIR": str(tmp_path)}
    with job_gpus(1, environ) as first:
        assert first == ["3"] and environ["CUDA_VISIBLE_DEVICES"] == "3"
        other = {"CUDA_VISIBLE_DEVICES": "3,5", "PRUNESCOPE_GPU_LOCK_DIR": str(tmp_path)}
        with job_gpus(1, other) as second:
            assert second == ["5"] and other["CUDA_VISIBLE_DEVICES"] == "5"


def test_job_gpus_leaves_cpu_jobs_and_slurm_jobs_alone(tmp_path):
    cpu_job = {"CUDA_VISIBLE_DEVICES": "0,1", "PRUNESCOPE_GPU_LOCK_DIR": str(tmp_path)}
    with job_gpus(0, cpu_job) as leased:
        assert leased == [] and cpu_job["CUDA_VISIBLE_DEVICES"] == "0,1"
    slurm_job = {"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": "12", **cpu_job}
    slurm_job["CUDA_VISIBLE_DEVICES"] = "0"
    with job_gpus(1, slurm_job) as leased:
        assert leased == [] and slurm_job["CUDA_VISIBLE_DEVICES"] == "0"
    assert not list(tmp_path.iterdir())


SNAKEFILE = """
rule all:
    input: expand("out/{i}.txt", i=range(6))

rule gpu_job:
    output: "out/{i}.txt"
    log: "logs/{i}.log"
    threads: 1
    resources: gpu=1
    script: "job.py"
"""

# The first two jobs wait for each other while holding their lease, so the test
# sees two concurrent leases however slowly a loaded machine starts each job.
JOB = """
import os, time
from pathlib import Path
from prunescope.runlog import rule_logging

with rule_logging(snakemake.log[0], snakemake.threads, gpus=snakemake.resources.gpu):
    start = time.time()
    started = Path("started")
    started.mkdir(exist_ok=True)
    (started / snakemake.wildcards.i).touch()
    while len(list(started.iterdir())) < 2 and time.time() < start + 120:
        time.sleep(0.05)
    time.sleep(0.2)
    device = os.environ["CUDA_VISIBLE_DEVICES"]
    with open(snakemake.output[0], "w") as f:
        f.write(f"{device} {start} {time.time()}")
"""


@pytest.mark.workflow
def test_snakemake_jobs_on_a_two_gpu_machine_each_get_their_own(tmp_path):
    (tmp_path / "Snakefile").write_text(textwrap.dedent(SNAKEFILE))
    (tmp_path / "job.py").write_text(textwrap.dedent(JOB))
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "0,1",
        "PRUNESCOPE_GPU_LOCK_DIR": str(tmp_path / "locks"),
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("SLURM_JOB_ID", None)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "6", "--resources", "gpu=2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spans = []
    for path in sorted((tmp_path / "out").iterdir()):
        device, start, end = path.read_text().split()
        spans.append((device, float(start), float(end)))
    assert {device for device, _, _ in spans} == {"0", "1"}
    for i, (device, start, end) in enumerate(spans):
        for other, other_start, other_end in spans[i + 1 :]:
            if start < other_end and other_start < end:
                assert device != other, spans
