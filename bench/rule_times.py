"""Where a workflow run spent its time: Snakemake's ``benchmark:`` files summed per rule.

    python -m bench.rule_times [results/benchmarks] [--top N]

Every rule writes its benchmark files under ``results/benchmarks/<rule>/...``, one TSV per
job with Snakemake's columns (``s``, ``h:m:s``, ``max_rss``, ...; one row per repeat when
a rule asks for ``repeat()``). The table lists the rules that took the most job-seconds:
jobs, total, mean and longest seconds, share of all job-seconds, and the peak ``max_rss``
(MB) of any of their jobs. Jobs that run side by side overlap in wall time, so job-seconds
add up to more than the run took.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterable
from pathlib import Path

DEFAULT_FOLDER = Path("results/benchmarks")
MISSING = {"", "NA", "-"}

Run = tuple[float, float | None]
"""One job's (seconds, max_rss in MB, or None where Snakemake wrote NA)."""


def rule_totals(rows: Iterable[tuple[str, float, float | None]]) -> list[dict]:
    """Per rule, from ``(rule, seconds, max_rss_mb or None)`` rows: jobs, total, mean and
    max seconds, share of all job-seconds and peak max_rss; most job-seconds first."""
    grouped: dict[str, list[Run]] = {}
    for rule, seconds, max_rss in rows:
        grouped.setdefault(rule, []).append((float(seconds), max_rss))
    grand_total = sum(s for runs in grouped.values() for s, _ in runs)
    totals = []
    for rule, runs in grouped.items():
        seconds = [s for s, _ in runs]
        rss = [r for _, r in runs if r is not None]
        total = sum(seconds)
        totals.append(
            {
                "rule": rule,
                "jobs": len(runs),
                "total_s": total,
                "mean_s": total / len(runs),
                "max_s": max(seconds),
                "share": total / grand_total if grand_total > 0 else 0.0,
                "peak_max_rss_mb": max(rss) if rss else None,
            }
        )
    return sorted(totals, key=lambda row: (-row["total_s"], row["rule"]))


def parse_benchmark_tsv(text: str, name: str = "benchmark file") -> list[Run]:
    """``(seconds, max_rss_mb or None)`` of every row of one Snakemake benchmark TSV."""
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    if reader.fieldnames is None or "s" not in reader.fieldnames:
        raise ValueError(f"{name} has no 's' column: it is not a Snakemake benchmark TSV")
    runs = []
    for line, row in enumerate(reader, start=2):
        try:
            seconds = float(row["s"])
            rss = (row.get("max_rss") or "").strip()
            runs.append((seconds, None if rss in MISSING else float(rss)))
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}, line {line}: s {row['s']!r} or max_rss {row.get('max_rss')!r} "
                "is not a number"
            ) from None
    return runs


def rule_of(path: Path, folder: Path) -> str:
    """The rule a benchmark file belongs to: its first folder under ``folder`` (or, for a
    file directly in ``folder``, its name without the suffix)."""
    parts = path.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else path.stem


def read_benchmarks(folder: Path) -> list[tuple[str, float, float | None]]:
    """``(rule, seconds, max_rss_mb or None)`` for every row of every TSV under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"benchmark folder {str(folder)!r} does not exist")
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        rule = rule_of(path, folder)
        for seconds, rss in parse_benchmark_tsv(path.read_text(), name=str(path)):
            rows.append((rule, seconds, rss))
    return rows


def format_table(totals: list[dict], top: int | None = None) -> str:
    """The per-rule table as text, the ``top`` rules only when given, with a total line."""
    shown = totals if top is None else totals[:top]
    width = max([len("rule"), *(len(row["rule"]) for row in shown)])
    lines = [
        f"{'rule':<{width}}  {'jobs':>5}  {'total s':>9}  {'mean s':>8}  {'max s':>8}  "
        f"{'share':>6}  {'peak max_rss':>12}"
    ]
    for row in shown:
        rss = "NA" if row["peak_max_rss_mb"] is None else f"{row['peak_max_rss_mb']:.0f} MB"
        lines.append(
            f"{row['rule']:<{width}}  {row['jobs']:>5d}  {row['total_s']:>9.1f}  "
            f"{row['mean_s']:>8.1f}  {row['max_s']:>8.1f}  {row['share']:>6.1%}  {rss:>12}"
        )
    jobs = sum(row["jobs"] for row in totals)
    seconds = sum(row["total_s"] for row in totals)
    lines.append(
        f"{jobs} jobs, {seconds:.0f} job-seconds in {len(totals)} rules"
        + (f" ({len(shown)} shown)" if len(shown) < len(totals) else "")
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rule_times", description=__doc__)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--top", type=int, default=None, help="show only the N slowest rules")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    try:
        rows = read_benchmarks(args.folder)
    except ValueError as error:
        parser.error(str(error))
    if not rows:
        print(f"no benchmark files under {args.folder}")
        return 1
    print(format_table(rule_totals(rows), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
