"""One GPU per job on a multi-GPU machine: a lease on a lock file per device.

Snakemake counts ``--resources gpu=N`` but does not say which device a job
gets. Every GPU rule leases its devices here before CUDA starts: it takes an
exclusive ``flock`` on one file per device id and narrows
``CUDA_VISIBLE_DEVICES`` to the devices it holds. The kernel drops the lock
when the process ends, however it ends, so a killed job never leaves a device
marked busy.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

LOCK_DIR_VARIABLE = "PRUNESCOPE_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = "/tmp/prunescope-gpu-locks"
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")

log = logging.getLogger("prunescope")


def candidate_devices(environ: Mapping[str, str], installed: int) -> list[str]:
    """The device ids a job may lease: ``CUDA_VISIBLE_DEVICES`` if set, else all installed.

    An existing ``CUDA_VISIBLE_DEVICES`` (set by the user or a wrapper) is
    honoured: the lease only ever narrows it.
    """
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip()]
    return [str(index) for index in range(installed)]


def installed_gpu_count() -> int:
    """NVIDIA devices on this machine, read without starting CUDA (0 if none)."""
    if NVIDIA_PROC.is_dir():
        return sum(1 for _ in NVIDIA_PROC.iterdir())
    return 0


def scheduler_assigns_devices(environ: Mapping[str, str]) -> bool:
    """True inside a SLURM job: SLURM already gave this job its own GPUs."""
    return "SLURM_JOB_ID" in environ


def _lock_name(device: str) -> str:
    return "gpu-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in device) + ".lock"


def try_lock(lock_dir: Path, device: str) -> int | None:
    """A file descriptor holding the device's exclusive lock, or None if another job has it."""
    # Read-only is enough for flock and works on a lock file another user created.
    handle = os.open(lock_dir / _lock_name(device), os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    return handle


@contextlib.contextmanager
def lease_devices(
    count: int,
    devices: Sequence[str],
    lock_dir: str | os.PathLike,
    poll_seconds: float = 0.5,
    report_every: float = 60.0,
) -> Iterator[list[str]]:
    """Hold ``count`` of ``devices`` exclusively until the block ends.

    Devices are tried in order, so a lone job always gets the first free one.
    If fewer than ``count`` are free (another workflow on the same machine),
    it waits, saying so once a minute.
    """
    if count > len(devices):
        raise ValueError(
            f"the rule asks for {count} GPU(s) but only {len(devices)} are visible: "
            f"{','.join(devices) or 'none'}"
        )
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    held: dict[str, int] = {}
    started = last_report = time.monotonic()
    try:
        while True:
            for device in devices:
                if len(held) == count:
                    break
                if device not in held and (handle := try_lock(lock_dir, device)) is not None:
                    held[device] = handle
            if len(held) == count:
                break
            now = time.monotonic()
            if now - last_report >= report_every:
                log.info(
                    "waiting %.0f s for %d free GPU(s) among %s (locks in %s)",
                    now - started,
                    count - len(held),
                    ",".join(devices),
                    lock_dir,
                )
                last_report = now
            time.sleep(poll_seconds)
        yield [device for device in devices if device in held]
    finally:
        for handle in held.values():
            os.close(handle)


@contextlib.contextmanager
def job_gpus(count: int, environ: dict[str, str] | None = None) -> Iterator[list[str]]:
    """Lease ``count`` GPUs for this job and set ``CUDA_VISIBLE_DEVICES`` to them.

    Must run before anything starts CUDA. Does nothing (and yields ``[]``) when
    the job asks for none, the machine has none, or SLURM assigned them.
    """
    environ = os.environ if environ is None else environ
    if count <= 0 or scheduler_assigns_devices(environ):
        yield []
        return
    devices = candidate_devices(environ, installed_gpu_count())
    if not devices:
        yield []
        return
    lock_dir = environ.get(LOCK_DIR_VARIABLE, DEFAULT_LOCK_DIR)
    with lease_devices(count, devices, lock_dir) as leased:
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(leased)
        log.info("leased GPU %s (lock files in %s)", ",".join(leased), lock_dir)
        yield leased
