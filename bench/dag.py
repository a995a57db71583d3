"""Benchmark: how long ``snakemake -n`` takes to build the workflow's DAG, per preset.

Target: a dry-run of the paper preset (``configs/paper.yaml``, over a thousand jobs) in
under 10 s. Each dry-run is a fresh ``snakemake`` process, as a user runs it, timed as the
median of 3 and interleaved with ``snakemake --version``: the import and start-up cost
that every invocation pays, so the record shows how much of the time is the DAG itself.
Each case also records the CPU seconds of the process: Snakemake plans on one core, so on
a shared machine that is the wall time it would take alone.

Dry-runs plan into an empty scratch folder (``--directory``), so they list every job of
the preset and never touch this checkout's ``.snakemake/``. One more case plans the
default preset against the results already built here (a symlink to ``results/`` and a
copy of the run metadata in the scratch folder): the up-to-date check after a run.

When ``results/benchmarks`` exists, the record also carries the per-rule time breakdown
of the run that wrote it (key ``rule_times``, see :mod:`bench.rule_times`).
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import interleaved_medians, median_seconds, target
from bench.rule_times import read_benchmarks, rule_totals
from prunescope.dry_run import planned_jobs

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK_FOLDER = ROOT / "results" / "benchmarks"
BOUND_S = 10.0
REPEATS = 3
WARMUP = 1
TOP_RULES = 10


def snakemake_command() -> list[str]:
    """The ``snakemake`` of this interpreter's environment (the project's venv)."""
    beside = Path(sys.executable).parent / "snakemake"
    if beside.exists():
        return [str(beside)]
    on_path = shutil.which("snakemake")
    return [on_path] if on_path else [sys.executable, "-m", "snakemake"]


def children_cpu_seconds() -> float:
    """User plus system CPU seconds of every finished child process so far.

    Other work on a shared machine stretches a dry-run's wall time but hardly its CPU
    time, and Snakemake plans on one core, so CPU time is what the wall time would be on
    an idle machine (less file-system waits).
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snakemake(*args: str) -> str:
    """Run ``snakemake *args`` from the checkout; its stdout and stderr together."""
    done = subprocess.run([*snakemake_command(), *args], cwd=ROOT, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{output[-4000:]}")
    return output


def dry_run_args(configfile: str, directory: Path, *extra: str) -> list[str]:
    return ["-n", "--configfile", str(ROOT / configfile), "--directory", str(directory), *extra]


def with_built_results(scratch: Path) -> Path:
    """A scratch working folder that sees this checkout's results and run metadata."""
    (scratch / "results").symlink_to(ROOT / "results", target_is_directory=True)
    metadata = ROOT / ".snakemake" / "metadata"
    if metadata.is_dir():
        shutil.copytree(metadata, scratch / ".snakemake" / "metadata")
    return scratch


def rule_time_breakdown(folder: Path = BENCHMARK_FOLDER, top: int = TOP_RULES) -> dict | None:
    """The slowest rules of the run that wrote ``folder`` (None when there is none)."""
    if not folder.is_dir():
        return None
    rows = read_benchmarks(folder)
    if not rows:
        return None
    totals = rule_totals(rows)
    return {
        "folder": str(folder.relative_to(ROOT)),
        "jobs": len(rows),
        "job_seconds": sum(seconds for _, seconds, _ in rows),
        "rules": len(totals),
        "top": totals[:top],
    }


def run(size: str) -> dict:
    """Time the dry-runs of ``size``: ``tiny`` one smoke-preset dry-run; ``full`` the
    paper and default presets against ``snakemake --version``."""
    record = run_tiny() if size == "tiny" else run_full()
    breakdown = rule_time_breakdown()
    if breakdown is not None:
        record["rule_times"] = breakdown
    return record


def run_tiny() -> dict:
    configfile = "configs/smoke.yaml"
    with tempfile.TemporaryDirectory(prefix="dag-") as scratch:
        outputs = []
        started_cpu = children_cpu_seconds()
        timing = median_seconds(
            lambda: outputs.append(snakemake(*dry_run_args(configfile, Path(scratch)))),
            repeats=1,
            warmup=0,
        )
        cpu_s = children_cpu_seconds() - started_cpu
    jobs = planned_jobs(outputs[-1])
    case = {
        "case": "smoke dry-run",
        "command": f"snakemake -n --configfile {configfile}",
        "jobs": sum(jobs.values()),
        "jobs_by_rule": jobs,
        **timing,
        "cpu_median_s": cpu_s,
        "cpu_samples_s": [cpu_s],
    }
    return {
        "cases": [case],
        "targets": [
            target(
                f"snakemake -n, smoke preset ({case['jobs']} jobs)",
                case["median_s"],
                BOUND_S,
                "<=",
                " s",
            )
        ],
    }


def run_full() -> dict:
    with tempfile.TemporaryDirectory(prefix="dag-") as scratch_root:
        scratch = Path(scratch_root)
        folders = {name: scratch / name for name in ("paper", "default", "built")}
        for folder in folders.values():
            folder.mkdir()
        contenders = {
            "startup": ("snakemake --version", ["--version"]),
            "paper": (
                "snakemake -n --configfile configs/paper.yaml",
                dry_run_args("configs/paper.yaml", folders["paper"]),
            ),
            "paper_quiet": (
                "snakemake -n --quiet rules --configfile configs/paper.yaml",
                dry_run_args("configs/paper.yaml", folders["paper"], "--quiet", "rules"),
            ),
            "default": (
                "snakemake -n --configfile config.yaml",
                dry_run_args("config.yaml", folders["default"]),
            ),
        }
        if (ROOT / "results").is_dir():
            contenders["default_built"] = (
                "snakemake -n --configfile config.yaml (against the built results/)",
                dry_run_args("config.yaml", with_built_results(folders["built"])),
            )
        outputs: dict[str, str] = {}
        cpu_samples: dict[str, list[float]] = {name: [] for name in contenders}

        def invocation(name: str, args: list[str]):
            def call():
                started = children_cpu_seconds()
                outputs[name] = snakemake(*args)
                cpu_samples[name].append(children_cpu_seconds() - started)

            return call

        timings = interleaved_medians(
            {name: invocation(name, args) for name, (_, args) in contenders.items()},
            repeats=REPEATS,
            warmup=WARMUP,
        )
    startup_s = timings["startup"]["median_s"]
    startup_cpu_s = statistics.median(cpu_samples["startup"][WARMUP:])
    cases = []
    for name, (command, _) in contenders.items():
        cpu = cpu_samples[name][WARMUP:]
        case = {
            "case": name,
            "command": command,
            **timings[name],
            "cpu_median_s": statistics.median(cpu),
            "cpu_samples_s": cpu,
        }
        if name == "startup":
            case["snakemake_version"] = outputs[name].strip().splitlines()[-1]
        else:
            jobs = planned_jobs(outputs[name])
            case.update(
                jobs=sum(jobs.values()),
                jobs_by_rule=jobs,
                dag_s=case["median_s"] - startup_s,
                dag_cpu_s=case["cpu_median_s"] - startup_cpu_s,
                startup_share=startup_s / case["median_s"],
            )
            if name != "default_built":
                # Only a fresh folder plans every job; the built one lists what is out of date.
                case["cpu_ms_per_job"] = 1000 * case["dag_cpu_s"] / case["jobs"]
        cases.append(case)
    paper = next(case for case in cases if case["case"] == "paper")
    return {
        "cases": cases,
        "targets": [
            target(
                f"snakemake -n, paper preset ({paper['jobs']} jobs)",
                paper["median_s"],
                BOUND_S,
                "<=",
                " s",
            )
        ],
    }
