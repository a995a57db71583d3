"""Run the benchmarks: ``python -m bench [--size tiny|full] [names ...]``.

Prints one line per target and writes each benchmark's record (cases, targets, machine)
to ``{out}/{name}.json``; ``--size tiny`` writes under ``results/bench/tiny/`` so a quick
check never overwrites the full measurements.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from bench.harness import SIZES, machine
from prunescope.io import write_json

BENCHMARKS = ("sae_step", "capture", "matching", "mip", "pruning", "paper_scale", "dag")
"""Module names under ``bench/``, in the order they run (cheap ones need no GPU)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[[], *BENCHMARKS],
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default results/bench, or results/bench/tiny)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The library's progress bars would bury the table; tqdm reads its defaults from TQDM_*.
    os.environ.setdefault("TQDM_DISABLE", "1")
    out = args.out or Path("results/bench") / ("tiny" if args.size == "tiny" else "")
    names = args.names or BENCHMARKS
    where = machine()
    print(
        f"# {where['cpu']} · {where['cpu_count']} cores · torch {where['torch']} "
        f"({where['torch_threads']} threads) · GPU: {where['gpu'] or 'none'}"
    )
    failed = []
    for name in names:
        started = time.perf_counter()
        record = importlib.import_module(f"bench.{name}").run(args.size)
        record = {
            "benchmark": name,
            "size": args.size,
            "machine": where,
            "wall_s": time.perf_counter() - started,
            **record,
        }
        write_json(out / f"{name}.json", record)
        for row in record["targets"]:
            print(format_target(name, row))
            if not row["met"]:
                failed.append(f"{name}: {row['target']}")
        print(f"  -> {out / f'{name}.json'} ({record['wall_s']:.0f} s)")
    if failed:
        print(f"{len(failed)} target(s) missed: " + "; ".join(failed))
    return 0


def format_target(name: str, row: dict) -> str:
    mark = "ok  " if row["met"] else "MISS"
    value = f"{row['value']:.3g}{row['unit']}"
    return f"{mark} {name:9s} {row['target']:<58s} {value:>10s} {row['kind']} {row['bound']:g}"


if __name__ == "__main__":
    sys.exit(main())
