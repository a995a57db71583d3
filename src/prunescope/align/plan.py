"""Study ALIGN's grid as plain data: tasks, trials, variants, lineages, artifact paths, checks.

Like :mod:`prunescope.plan` for Study LM, the rule files ask this module what to build
and it knows nothing of Snakemake.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial

from prunescope.plan import canonical, format_sparsity

STRUCTURES = {"unstructured": None, "2of4": (2, 4)}
DIGITS_PIXELS = 64
# Figures over several tasks and what they need from the grid.
DNF_FIGURES = ("fig2", "fig4", "fig5", "figA1", "figA6", "figA7")
DIGITS_FIGURES = ("fig6",)
ANY_TASK_FIGURES = ("figA3",)
STRUCTURED_FIGURES = ("figA8",)
# Weight pictures of one trial, per task.
DNF_PICTURES = ("fig1", "fig3", "figA4")
DIGITS_PICTURES = ("figA2", "figA5")
MASK_ONLY = {"obs_mask", "mip_mask"}


def align_block(config: dict) -> dict | None:
    return config.get("align")


def tasks(config: dict, kind: str | None = None) -> list[str]:
    block = align_block(config) or {"tasks": {}}
    return [t for t, spec in block["tasks"].items() if kind is None or spec["kind"] == kind]


def task_width(config: dict, task: str) -> int:
    """d = d_in = h: the DNF's literal count, or Digits' 64 pixels."""
    spec = config["align"]["tasks"][task]
    return spec["literals"] if spec["kind"] == "dnf" else DIGITS_PIXELS


def structure_sparsities(config: dict, structure: str) -> list[float]:
    """≥2:4 already zeroes half of every row, so it only takes sparsities of at least 0.5."""
    sparsities = sorted(config["align"]["sparsities"])
    if structure == "2of4":
        return [s for s in sparsities if s >= 0.5]
    return sparsities


def variants(config: dict, structure: str) -> list[tuple[str, float]]:
    """Every (method, sparsity) pruned from one dense net under ``structure``."""
    methods = config["align"]["methods"]
    return [(m, s) for s in structure_sparsities(config, structure) for m in methods]


def needs_mip(config: dict) -> bool:
    return bool({"mip", "flo", "mip_mask"} & set(config["align"]["methods"]))


def dataset_options(config: dict, task: str, trial: int) -> dict:
    """What the dataset rule reads: DNF sizes scale with m (A.1); Digits' split is fixed."""
    align = config["align"]
    spec = align["tasks"][task]
    if spec["kind"] == "digits":
        return {"kind": "digits", **align["digits"]}
    m = spec["literals"]
    return {
        "kind": "dnf",
        "literals": m,
        "n_train": align["dnf"]["train_per_16_literals"] * m // 16,
        "n_test": align["dnf"]["test_per_16_literals"] * m // 16,
        "active_value": align["dnf"]["active_value"],
        "seed": int(trial),
    }


def hessian_fraction(config: dict, task: str) -> float:
    kind = config["align"]["tasks"][task]["kind"]
    return config["align"]["hessian"][f"{kind}_fraction"]


# --- lineage: what an artifact's content follows, all the way up ------------------------------
#
# As for Study LM (see prunescope.plan): a reader carries the lineage of what it reads among
# its params, because Snakemake deletes a failed job's output with the record of its params
# and does not rerun a job whose output is missing while every reader of it is up to date.
# Each lineage is the producing job's own settings plus the lineage of what that job reads,
# so an edit changes the lineage of exactly the artifacts downstream of it. The device is
# left out, as in Study LM: it picks where the sums run, not what they compute.


def net_lineage(config: dict, task: str, trial) -> dict:
    """A dense net: its dataset, the training settings and the trial's seed."""
    return canonical(
        {
            "data": dataset_options(config, task, trial),
            "training": config["align"]["training"],
            "seed": int(trial),
        }
    )


def hessian_lineage(config: dict, task: str, trial) -> dict:
    """A W1 Hessian and its inverse: the net, the share of samples it sums over, the damping."""
    return canonical(
        {
            "net": net_lineage(config, task, trial),
            "fraction": hessian_fraction(config, task),
            "damping": config["align"]["hessian"]["damping"],
            "seed": int(trial),
        }
    )


def mip_lineage(config: dict, task: str, structure: str, trial, sparsity) -> dict:
    """A MIP solution: the net, every MIP option (the same the solve's params hold), the pattern."""
    return canonical(
        {
            "net": net_lineage(config, task, trial),
            "mip": config["align"]["mip"],
            "structure": structure,
            "sparsity": float(sparsity),
        }
    )


def mip_lineages(config: dict, task: str, structure: str, trial) -> list[dict]:
    """The solutions a pruning job reads: none when no method uses the oracle."""
    if not needs_mip(config):
        return []
    return [
        mip_lineage(config, task, structure, trial, s)
        for s in structure_sparsities(config, structure)
    ]


def pruned_lineage(config: dict, task: str, structure: str, trial) -> dict:
    """The pruned variants of one net: its Hessian, the MIP solutions, which variants."""
    return canonical(
        {
            "hessian": hessian_lineage(config, task, trial),
            "mip": mip_lineages(config, task, structure, trial),
            "variants": variants(config, structure),
            "structure": structure,
        }
    )


def finetuned_lineage(config: dict, task: str, structure: str, trial) -> dict:
    """The fine-tuned variants: the pruned ones (data and dense net within) and the settings."""
    return canonical(
        {
            "pruned": pruned_lineage(config, task, structure, trial),
            "finetuning": config["align"]["finetuning"],
            "seed": int(trial),
        }
    )


def sweep_lineage(config: dict, task: str, trial) -> dict:
    return canonical(
        {"net": net_lineage(config, task, trial), "sparsities": config["align"]["magnitude_sweep"]}
    )


def each_net(config: dict, lineage) -> list[dict]:
    """``lineage(config, task, trial)`` over every task and trial, as the tables read them."""
    trials = config["align"]["trials"]
    return [lineage(config, task, trial) for task in tasks(config) for trial in trials]


def digest(lineages: list[dict]) -> dict:
    """Many artifacts' lineages in a few bytes, for a job that reads the whole grid.

    Snakemake keeps every param of every output and prints it, before and now, in a
    rerun's reason: written out, the paper preset's accuracy table would carry 350 kB.
    Sorted, like Snakemake's record of input files, so that listing tasks or trials in
    another order reruns nothing.
    """
    lines = sorted(json.dumps(canonical(lineage), separators=(",", ":")) for lineage in lineages)
    text = "\n".join(lines).encode()
    return {"artifacts": len(lineages), "sha256": hashlib.sha256(text).hexdigest()}


def accuracy_lineage(config: dict) -> dict:
    # the fine-tuned variants' lineage holds that of the pruned ones, which the table reads too
    return digest(each_trial(config, lambda t, s, i: [finetuned_lineage(config, t, s, i)]))


def _picture_reads(config: dict, task: str) -> dict:
    trial = config["align"]["heatmap_trial"]
    return {"pruned": pruned_lineage(config, task, "unstructured", trial)}


# What each rule reads, from the config and its wildcards. A net's lineage holds its
# dataset's, so the rules that read both name the net alone.
READS = {
    "train_align_net": lambda c, w: {"data": dataset_options(c, w["task"], w["trial"])},
    "estimate_align_hessian": lambda c, w: {"net": net_lineage(c, w["task"], w["trial"])},
    "solve_align_mip": lambda c, w: {"net": net_lineage(c, w["task"], w["trial"])},
    "sweep_align_magnitude": lambda c, w: {"net": net_lineage(c, w["task"], w["trial"])},
    "prune_align_nets": lambda c, w: {
        "hessian": hessian_lineage(c, w["task"], w["trial"]),
        "mip": mip_lineages(c, w["task"], w["structure"], w["trial"]),
    },
    "finetune_align_nets": lambda c, w: {
        "pruned": pruned_lineage(c, w["task"], w["structure"], w["trial"])
    },
    "align_accuracy_table": lambda c, w: accuracy_lineage(c),
    "align_mip_table": lambda c, w: digest(each_trial(c, partial(mip_lineages, c))),
    "align_training_table": lambda c, w: digest(each_net(c, net_lineage)),
    "align_sweep_table": lambda c, w: digest(each_net(c, sweep_lineage)),
    "plot_align_figure": lambda c, w: {
        "accuracy": accuracy_lineage(c),
        "training": digest(each_net(c, net_lineage)),
        "sweep": digest(each_net(c, sweep_lineage)),
    },
    "plot_align_picture": lambda c, w: _picture_reads(c, w["task"]),
}


def upstream_of(config: dict, rule: str, wildcards: dict) -> dict:
    """The lineage of what a Study ALIGN job reads: its ``upstream`` param.

    ``wildcards`` maps the job's wildcard names (task, structure, trial, ...) to their values.
    """
    if rule not in READS:
        raise ValueError(f"no upstream lineage is defined for Study ALIGN rule {rule!r}")
    return canonical(READS[rule](config, wildcards))


# --- artifact paths -------------------------------------------------------------------------


def dataset_path(task: str, trial) -> str:
    return f"results/align/data/{task}/trial{trial}.npz"


def net_dir(task: str, trial) -> str:
    return f"results/align/nets/{task}/trial{trial}"


def mip_path(task: str, structure: str, trial, sparsity) -> str:
    return f"results/align/mip/{task}/{structure}/trial{trial}/s{format_sparsity(sparsity)}.npz"


def pruned_dir(task: str, structure: str, trial) -> str:
    return f"results/align/pruned/{task}/{structure}/trial{trial}"


def each_trial(config: dict, paths_for) -> list[str]:
    """``paths_for(task, structure, trial)`` over every task, structure and trial."""
    align = config["align"]
    return [
        path
        for task in tasks(config)
        for structure in align["structures"]
        for trial in align["trials"]
        for path in paths_for(task, structure, trial)
    ]


def align_figures(config: dict) -> list[str]:
    if not align_block(config):
        return []
    figures = list(ANY_TASK_FIGURES)
    if tasks(config, "dnf"):
        figures += DNF_FIGURES
    if tasks(config, "digits"):
        figures += DIGITS_FIGURES
    if "2of4" in config["align"]["structures"]:
        figures += STRUCTURED_FIGURES
    return sorted(figures)


def align_pictures(config: dict) -> list[tuple[str, str]]:
    """(task, picture) of every weight heat map."""
    if not align_block(config):
        return []
    pictures = [(t, p) for t in tasks(config, "dnf") for p in DNF_PICTURES]
    return pictures + [(t, p) for t in tasks(config, "digits") for p in DIGITS_PICTURES]


ALIGN_TABLES = ("accuracy", "accuracy_summary", "mip_solves", "training_codes", "magnitude_sweep")


def align_targets(config: dict) -> list[str]:
    if not align_block(config):
        return []
    tables = [f"results/align/tables/{t}.csv" for t in ALIGN_TABLES]
    figures = [f"results/align/figures/{f}.png" for f in align_figures(config)]
    pictures = [f"results/align/figures/{t}/{p}.png" for t, p in align_pictures(config)]
    return tables + figures + pictures


def keep_count(d: int, sparsity: float) -> int:
    """Weights kept per row of W1: ``d - round(sparsity * d)``.

    Defined here rather than with the pruning maths because every Snakemake call imports
    this module to check the config, and the pruning module pulls in scipy.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    keep = d - int(round(sparsity * d))
    if keep < 1:
        raise ValueError(f"sparsity {sparsity} leaves no weight in a row of {d}")
    return keep


# --- semantic checks the JSON schema cannot express -------------------------------------------


def check_align(config: dict) -> None:
    """Raise one ``ValueError`` sentence naming the offending key, before any job runs."""
    align = align_block(config)
    if not align:
        return
    for task, spec in align["tasks"].items():
        key = f"align.tasks.{task}"
        if spec["kind"] == "dnf" and "literals" not in spec:
            raise ValueError(f"{key} is a DNF task but has no 'literals'")
        if spec["kind"] == "digits" and "literals" in spec:
            raise ValueError(f"{key} is a Digits task: 'literals' does not apply (64 pixels)")
        width = task_width(config, task)
        for sparsity in align["sparsities"]:
            try:
                keep_count(width, sparsity)
            except ValueError:
                raise ValueError(
                    f"align.sparsities: {sparsity:g} leaves no weight in a row of {key} "
                    f"({width} weights per row)"
                ) from None
    if "2of4" in align["structures"] and not structure_sparsities(config, "2of4"):
        raise ValueError(
            "align.structures has 2of4, but no value of align.sparsities is at least 0.5 "
            "(the sparsity a 2:4 pattern already imposes)"
        )
    if align["heatmap_trial"] not in align["trials"]:
        raise ValueError(f"align.heatmap_trial {align['heatmap_trial']} is not in align.trials")
    if align["heatmap_sparsity"] not in align["sparsities"]:
        raise ValueError(
            f"align.heatmap_sparsity {align['heatmap_sparsity']:g} is not in align.sparsities"
        )
