"""What a Snakemake dry-run (``snakemake -n``) plans, read from the summary it prints.

Parsed from the text alone, so reading a plan needs no Snakemake import.
"""

from __future__ import annotations

import re


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Jobs per rule from the last 'Job stats' table of a dry-run (empty when nothing is
    to be done)."""
    if "Job stats:" not in dry_run_output:
        return {}
    table = dry_run_output.rsplit("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts
