"""Disk a workflow run uses over time: its peak, and what the peak would be keeping everything.

    python -m bench.disk_usage [--folder results] [--every 2] [--out FILE] -- snakemake ...

Runs the command and, every ``--every`` seconds until it ends, lists every file under
``--folder`` with its size. It reports:

- the peak of the folder's total (what the disk had to hold; with ``keep_intermediates:
  false`` Snakemake deletes the large intermediates while the run goes on);
- the largest size each finished file reached, summed: the peak had nothing been deleted,
  which is the peak of a run with ``keep_intermediates: true`` (``.partial`` files are
  left out, being the same bytes as the file they become);
- that sum by kind of artifact, and the folder's size at the end.

A file that appears and is deleted between two samples is missed, so the peak is a lower
bound; intermediates that live for a whole job are seen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

PARTIAL = ".partial"
KINDS = (
    ("activation caches", "activations/"),
    ("pruned LM checkpoints", "models/"),
    ("Study ALIGN Hessians", "align/nets/", "hessian"),
    ("SAEs", "sae/"),
    ("dictionary matches", "matches/"),
    ("Study ALIGN nets", "align/nets/"),
    ("Study ALIGN MIP solutions", "align/mip/"),
)
"""(kind, folder under the results folder[, word in the file name]); the first match wins."""


def snapshot(folder: Path) -> dict[str, int]:
    """Size in bytes of every file under ``folder``, by path relative to it.

    Files deleted while the folder is walked are skipped: the run goes on meanwhile.
    """
    sizes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            try:
                sizes[path.relative_to(folder).as_posix()] = path.stat().st_size
            except FileNotFoundError:
                continue
    return sizes


def kind_of(path: str) -> str:
    """Which kind of artifact a path relative to the results folder is (see ``KINDS``)."""
    for kind, prefix, *word in KINDS:
        if path.startswith(prefix) and all(w in Path(path).name for w in word):
            return kind
    return "everything else"


class DiskTrace:
    """Samples of one folder: the largest total seen and each file's largest size."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self.largest: dict[str, int] = {}
        self.samples = 0
        self.last: dict[str, int] = {}

    def add(self, sizes: dict[str, int]) -> None:
        self.samples += 1
        self.last = sizes
        self.peak_bytes = max(self.peak_bytes, sum(sizes.values()))
        for path, size in sizes.items():
            if not path.endswith(PARTIAL):
                self.largest[path] = max(size, self.largest.get(path, 0))

    def kept_bytes(self) -> int:
        """Peak had no file been deleted: every finished file at its largest."""
        return sum(self.largest.values())

    def kept_by_kind(self) -> dict[str, int]:
        return by_kind(self.largest.items())

    def summary(self) -> dict:
        return {
            "samples": self.samples,
            "peak_bytes": self.peak_bytes,
            "end_bytes": sum(self.last.values()),
            "keep_everything_bytes": self.kept_bytes(),
            "keep_everything_by_kind_bytes": self.kept_by_kind(),
            "end_by_kind_bytes": by_kind(self.last.items()),
        }


def by_kind(sizes: Iterable[tuple[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for path, size in sizes:
        kind = kind_of(path)
        totals[kind] = totals.get(kind, 0) + size
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def trace_command(command: list[str], folder: Path, every: float) -> tuple[int, DiskTrace]:
    """Run ``command`` to its end, sampling ``folder`` every ``every`` seconds."""
    trace = DiskTrace()
    process = subprocess.Popen(command)
    while process.poll() is None:
        trace.add(snapshot(folder))
        time.sleep(every)
    trace.add(snapshot(folder))
    return process.returncode, trace


def gigabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.disk_usage", description=__doc__)
    parser.add_argument("--folder", type=Path, default=Path("results"))
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, help="write the summary here as JSON")
    parser.add_argument("command", nargs="+", help="the run to trace, after --")
    args = parser.parse_args(argv)
    returncode, trace = trace_command(args.command, args.folder, args.every)
    summary = {"command": args.command, "returncode": returncode, **trace.summary()}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"peak {gigabytes(summary['peak_bytes'])}, end {gigabytes(summary['end_bytes'])}")
    print(f"keeping every file: {gigabytes(summary['keep_everything_bytes'])}")
    for kind, size in summary["keep_everything_by_kind_bytes"].items():
        print(f"  {kind}: {gigabytes(size)}")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
