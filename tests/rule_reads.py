"""What each rule declares it reads: the ``upstream=reads(name=lineage, ...)`` of the rule
files, with each lineage function looked up in the library, so tests can compute every
job's ``upstream`` param without Snakemake."""

from __future__ import annotations

import re
from pathlib import Path

import prunescope.align.plan
import prunescope.lineage

RULE_FILES = Path(__file__).resolve().parents[1] / "workflow" / "rules"
LINEAGE_MODULES = (prunescope.lineage, prunescope.align.plan)


def _lineage(name: str):
    for module in LINEAGE_MODULES:
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no lineage function {name!r} in {[m.__name__ for m in LINEAGE_MODULES]}")


def declared_reads() -> dict[str, dict]:
    """``{rule: {name: lineage function}}`` for every rule with an ``upstream`` param."""
    reads = {}
    for rule_file in sorted(RULE_FILES.glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", rule_file.read_text()):
            rule = re.match(r"rule (\w+):", block)
            declared = re.search(r"upstream=reads\(([^)]*)\)", block)
            if rule and declared:
                pairs = [item.split("=") for item in declared.group(1).split(",") if item.strip()]
                reads[rule.group(1)] = {k.strip(): _lineage(v.strip()) for k, v in pairs}
    return reads
