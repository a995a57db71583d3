"""The library's import direction, as docs/architecture.md draws it: each module imports only
modules of its own layer or the layers below, analysis code never imports the workflow
plan, and nothing in the library imports Snakemake."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# top to bottom; a name is a module or a package of src/prunescope
LAYERS = [
    [
        "robust_fragile",
        "transfer",
        "analysis",
        "export",
        "feature_pruning.jobs",
        "feature_pruning.tables",
        "feature_pruning.figure",
        "browser.jobs",
        "browser.pages",
        "browser.findings",
        "browser.contexts",
    ],
    ["ablation", "survival", "match_files", "matching", "pretrained"],
    ["sae", "pruning", "feature_pruning", "activations", "browser"],
    [
        "align.jobs",
        "align.pictures",
        "align.figures",
        "align.results",
        "align.experiment",
        "align.basis",
        "align.mip",
        "align.prune",
        "align.hessian",
        "align.net",
        "align.codes",
        "align.data",
    ],
    ["models", "checkpoints", "corpus", "tinylm", "perplexity"],
    ["memory", "checks", "plan", "lineage", "align.plan"],
    [
        "conditions",
        "paths",
        "settings",
        "align.structures",
        "align.methods",
        "architectures",
        "errors",
        "io",
        "artifacts",
        "stats",
        "figures",
        "hub",
        "gpus",
        "runlog",
        "dry_run",
        "configcheck",
    ],
]
WORKFLOW_PLANNING = set(LAYERS[-2])
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def unit_of(module: str) -> str | None:
    """``prunescope.align.mip.search`` -> ``align.mip``: the most specific name of LAYERS."""
    parts = module.split(".")[1:]
    for length in range(len(parts), 0, -1):
        name = ".".join(parts[:length])
        if name in LAYER_OF:
            return name
    return None


def library_modules() -> dict[str, Path]:
    root = SRC / "prunescope"
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        modules[".".join(p for p in parts if p != "__init__")] = path
    return modules


def imports_of(path: Path, module: str) -> set[str]:
    """Every module ``module`` (at ``path``) imports: ``from prunescope import x`` counts as
    ``prunescope.x``, and a relative import is resolved against the module's package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if base == "prunescope"}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found - {"prunescope"}


MODULES = {
    m: p for m, p in library_modules().items() if m not in ("prunescope", "prunescope.align")
}


def test_every_library_module_has_a_layer():
    assert [m for m in MODULES if unit_of(m) is None] == []


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_only_its_layer_and_the_layers_below(module):
    unit = unit_of(module)
    upward = []
    for imported in imports_of(MODULES[module], module):
        if imported.split(".")[0] == "snakemake":
            upward.append(imported)
        if not imported.startswith("prunescope."):
            continue
        other = unit_of(imported)
        if other is None or LAYER_OF[other] < LAYER_OF[unit]:
            upward.append(imported)
        elif other in WORKFLOW_PLANNING and unit not in WORKFLOW_PLANNING:
            upward.append(imported)
    assert upward == []
