"""Every command the README shows, run as written (dry-run where it would do real work).

A command a user copies from the README is part of the interface: each ``bash`` block's
commands are extracted, including alternatives written as ``# or: <command>``. Snakemake
commands run in a copy of the workflow with ``-n`` added; ``make`` targets run with
``make -n`` and the Snakemake or benchmark commands they would start are checked the same
way; benchmark commands are parsed by the benchmark's own argument parser. A command of a
kind this file does not know fails the test, so a new README command cannot go untested.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, copy_workflow, run_snakemake

from prunescope.settings import fill_library_defaults

README = ROOT / "README.md"
# What `source .venv/bin/activate` gives a user: the environment's programs first on PATH.
ACTIVATED = {
    **os.environ,
    "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    "PYTHONPATH": str(ROOT),
}


def readme_commands(text: str) -> list[str]:
    """The commands of every ```bash block, comments dropped, ``# or:`` alternatives kept."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            code, _, comment = line.partition("#")
            if code.strip():
                commands.append(code.strip())
            alternative = re.match(r"\s*or:\s*(.+)", comment)
            if alternative:
                commands.append(alternative[1].strip())
    return commands


def test_the_extraction_sees_code_comments_and_alternatives():
    text = "```bash\nmake a   # or: pip install x\n# a note\nsnakemake -n  # dry\n```\n"
    assert readme_commands(text) == ["make a", "pip install x", "snakemake -n"]


COMMANDS = readme_commands(README.read_text())
# Commands that read a finished run; the rest run on a fresh copy of the workflow.
ON_A_FINISHED_RUN = [c for c in COMMANDS if "--report" in c or "bench.rule_times" in c]


def test_the_readme_shows_the_headline_commands():
    assert "snakemake results/tables/table3.csv --cores 8 --resources gpu=1" in COMMANDS
    assert {"make run", "make test", "snakemake -n"} <= set(COMMANDS)


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("readme"))


def dry_run(words: list[str], where: Path) -> None:
    """Run a Snakemake command line as written, plus ``-n``, in ``where``."""
    assert words[0].endswith("snakemake"), words
    if "--lint" in words:
        out = run_snakemake(*words[1:], cwd=where)
        assert "Lints for" not in out, out[-2000:]
        return
    out = run_snakemake(*words[1:], "-n", cwd=where)
    assert "This was a dry-run" in out or "Nothing to be done" in out, out[-2000:]


def parse_bench(module: str, args: list[str]) -> None:
    """Parse ``python -m <module> args`` with the benchmark's own parser (no benchmark runs)."""
    main = importlib.import_module(module if module != "bench" else "bench.__main__")
    try:
        main.build_parser().parse_args(args)
    except SystemExit as stop:
        pytest.fail(f"python -m {module} {shlex.join(args)} does not parse (exit {stop.code})")


def check_python_module(words: list[str], where: Path) -> None:
    assert words[:2] == ["python", "-m"], words
    module, args = words[2], words[3:]
    if module == "bench.disk_usage":
        # the traced run is a Snakemake command line: trace its dry-run instead
        result = subprocess.run(
            [sys.executable, "-m", module, *args, "-n"],
            cwd=where,
            capture_output=True,
            text=True,
            env=ACTIVATED,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return
    if module == "prunescope.configcheck":
        result = subprocess.run([sys.executable, "-m", module, *args], cwd=where, env=ACTIVATED)
        assert result.returncode == 0, f"{module} refused {args}"
        return
    if module in {"bench", "bench.rule_times"}:
        parse_bench(module, args)
        return
    pytest.fail(f"README command python -m {module} is of a kind this test does not know")


def check_make(words: list[str], where: Path) -> None:
    """``make -n`` the targets; check the Snakemake and benchmark commands they would run."""
    result = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        started = shlex.split(line)
        if not started:
            continue
        program = Path(started[0]).name
        if program == "snakemake":
            dry_run(["snakemake", *started[1:]], where)
        elif program.startswith("python") and started[1:3] == ["-m", "bench"]:
            parse_bench("bench", started[3:])


def check_pip(words: list[str]) -> None:
    """``pip install -e '.[extra]'``: the extra exists in pyproject.toml."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for word in words[2:]:
        extra = re.fullmatch(r"\.\[(\w+)\]", word)
        if extra:
            assert extra[1] in extras, f"pyproject.toml has no [{extra[1]}] extra"


def check_gpu_check(words: list[str], out: Path) -> None:
    """The GPU check as written, limited to its sections that finish in seconds without a
    GPU (the CUDA-only tests skip; the paper-scale benchmark records "skipped")."""
    sections = "cuda_only_tests paper_scale"
    # no GPU even where there is one: the paper-scale cases would take minutes
    env = {**ACTIVATED, "GPU_CHECK_SECTIONS": sections, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        ["bash", *words, str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (out / "gpu_check.log").read_text().split("== summary")[-1]
    for name in sections.split():
        assert re.search(rf"{name} +exit 0 after", summary), summary


def needs_slurm_plugin(words: list[str]) -> bool:
    return "--profile" in words and "slurm" in words[words.index("--profile") + 1]


@pytest.mark.workflow
@pytest.mark.parametrize("command", [c for c in COMMANDS if "--report" not in c])
def test_readme_command_works_as_written(command, workflow_copy):
    words = shlex.split(command)
    if (
        needs_slurm_plugin(words)
        and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None
    ):
        if os.environ.get("CI"):
            pytest.fail("the SLURM executor plugin is missing: .ci/run installs it")
        pytest.skip("the SLURM executor plugin is not installed (make install-slurm)")
    if words[0] == "snakemake":
        dry_run(words, workflow_copy)
    elif words[0] == "make":
        check_make(words, workflow_copy)
    elif words[0] == "python":
        check_python_module(words, workflow_copy)
    elif words[:2] == ["pip", "install"]:
        check_pip(words)
    elif words[0] == "bench/gpu_check.sh":
        check_gpu_check(words, workflow_copy / "gpu_check")
    else:
        pytest.fail(f"README command {command!r} is of a kind this test does not know")


@pytest.mark.slow
@pytest.mark.parametrize("command", ON_A_FINISHED_RUN)
def test_readme_command_on_a_finished_run(command, smoke_run, tmp_path):
    """Run as written on a copy of the smoke run, with the smoke preset as its config.yaml."""
    import shutil

    run = Path(shutil.copytree(smoke_run, tmp_path / "run", symlinks=True))
    shutil.copy(run / "configs/smoke.yaml", run / "config.yaml")
    words = shlex.split(command)
    program = {"python": [sys.executable], "snakemake": [sys.executable, "-m", "snakemake"]}
    result = subprocess.run(
        [*program[words[0]], *words[1:]],
        cwd=run,
        capture_output=True,
        text=True,
        env=ACTIVATED,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_the_readme_pretrained_sae_snippet_is_a_valid_config():
    """The YAML a user copies to configure a Gemma Scope SAE passes the schema and the
    config checks, applied to the paper preset's model of the same name, and names the SAE
    the preset uses."""
    import yaml
    from snakemake.utils import validate

    from prunescope.checks import check_config
    from prunescope.plan import pretrained_saes

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    snippet = next(yaml.safe_load(b) for b in blocks if "pretrained_saes" in b)
    config = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
    for model, spec in snippet["models"].items():
        config["models"][model].update(spec)
    validate(fill_library_defaults(config), str(ROOT / "workflow/schemas/config.schema.yaml"))
    check_config(config)
    paper = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
    for model in snippet["models"]:
        assert pretrained_saes(config, model) == pretrained_saes(paper, model)
