"""Study ALIGN's grid as plain data: tasks, trials, variants, lineages, targets, checks.

Like :mod:`prunescope.plan` for Study LM, the rule files ask this module what to build
and it knows nothing of Snakemake.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial

from prunescope.align.methods import estimators_of
from prunescope.align.structures import keep_count
from prunescope.conditions import canonical
from prunescope.paths import ALIGN_FIGURE, ALIGN_PICTURE, ALIGN_TABLE, fill

DIGITS_PIXELS = 64
# Figures over several tasks and what they need from the grid.
DNF_FIGURES = ("fig2", "fig4", "fig5", "figA1", "figA6", "figA7")
DIGITS_FIGURES = ("fig6",)
ANY_TASK_FIGURES = ("figA3",)
STRUCTURED_FIGURES = ("figA8",)
# Weight pictures of one trial, per task.
DNF_PICTURES = ("fig1", "fig3", "figA4")
DIGITS_PICTURES = ("figA2", "figA5")


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


def basis_estimators(config: dict) -> list[str]:
    """The estimated bases the methods prune against (``sae`` for ``mip_sae``, ...)."""
    return estimators_of(config["align"]["methods"])


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
# As for Study LM (see prunescope.lineage): a reader carries the lineage of what it reads among
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


def basis_lineage(config: dict, task: str, trial, estimator: str) -> dict:
    """An estimated basis: the net (its C0 embeds the inputs), the estimator and its settings."""
    return canonical(
        {
            "net": net_lineage(config, task, trial),
            "estimator": estimator,
            "settings": config["align"]["basis"][estimator],
            "seed": int(trial),
        }
    )


def basis_mip_lineage(config: dict, task: str, structure: str, trial, estimator, sparsity):
    """A MIP solution with an estimated basis: the basis (the net within), the MIP options,
    the pattern."""
    return canonical(
        {
            "basis": basis_lineage(config, task, trial, estimator),
            "mip": config["align"]["mip"],
            "structure": structure,
            "sparsity": float(sparsity),
        }
    )


def solution_lineages(config: dict, task: str, structure: str, trial) -> list[dict]:
    """Every MIP solution a pruning job reads: the oracle's, then each estimated basis's
    (none of those without an estimated-basis method, so such a config's lineages stay as
    they were)."""
    return mip_lineages(config, task, structure, trial) + [
        basis_mip_lineage(config, task, structure, trial, estimator, s)
        for estimator in basis_estimators(config)
        for s in structure_sparsities(config, structure)
    ]


def pruned_lineage(config: dict, task: str, structure: str, trial) -> dict:
    """The pruned variants of one net: its Hessian, the MIP solutions, which variants."""
    return canonical(
        {
            "hessian": hessian_lineage(config, task, trial),
            "mip": solution_lineages(config, task, structure, trial),
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


# --- what a Study ALIGN job reads, from the config and its wildcards -------------------------
# A net's lineage holds its dataset's, so the rules that read both name the net alone.


def dataset_of(config: dict, w: dict) -> dict:
    return dataset_options(config, w["task"], w["trial"])


def net_of(config: dict, w: dict) -> dict:
    return net_lineage(config, w["task"], w["trial"])


def hessian_of(config: dict, w: dict) -> dict:
    return hessian_lineage(config, w["task"], w["trial"])


def mip_solutions_of(config: dict, w: dict) -> list[dict]:
    return solution_lineages(config, w["task"], w["structure"], w["trial"])


def basis_of(config: dict, w: dict) -> dict:
    return basis_lineage(config, w["task"], w["trial"], w["estimator"])


def pruned_of(config: dict, w: dict) -> dict:
    return pruned_lineage(config, w["task"], w["structure"], w["trial"])


def heatmap_pruned_of(config: dict, w: dict) -> dict:
    """The unstructured variants of the heat-map trial, which a weight picture shows."""
    return pruned_lineage(config, w["task"], "unstructured", config["align"]["heatmap_trial"])


def every_variant(config: dict, w: dict | None = None) -> dict:
    """Every fine-tuned variant, whose lineage holds that of the pruned ones (accuracy)."""
    return accuracy_lineage(config)


def every_mip_solution(config: dict, w: dict | None = None) -> dict:
    return digest(each_trial(config, partial(mip_lineages, config)))


def every_net(config: dict, w: dict | None = None) -> dict:
    return digest(each_net(config, net_lineage))


def every_sweep(config: dict, w: dict | None = None) -> dict:
    return digest(each_net(config, sweep_lineage))


def every_basis(config: dict, w: dict | None = None) -> dict:
    return digest(
        [
            basis_lineage(config, task, trial, estimator)
            for task in tasks(config)
            for trial in config["align"]["trials"]
            for estimator in basis_estimators(config)
        ]
    )


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
BASIS_TABLES = ("estimated_basis", "basis_recovery")
"""Built when a method prunes against an estimated basis."""


def align_targets(config: dict) -> list[str]:
    if not align_block(config):
        return []
    names = ALIGN_TABLES + (BASIS_TABLES if basis_estimators(config) else ())
    tables = [fill(ALIGN_TABLE, name=t) for t in names]
    figures = [fill(ALIGN_FIGURE, figure=f) for f in align_figures(config)]
    pictures = [fill(ALIGN_PICTURE, task=t, picture=p) for t, p in align_pictures(config)]
    return tables + figures + pictures


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
