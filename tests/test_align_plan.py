"""Study ALIGN's grid, paths and config checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from rule_reads import declared_reads
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from prunescope.align.methods import ESTIMATORS
from prunescope.align.plan import (
    align_targets,
    check_align,
    dataset_options,
    structure_sparsities,
    tasks,
    variants,
)
from prunescope.lineage import upstream
from prunescope.settings import fill_library_defaults

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def validated(name: str = "config.yaml") -> dict:
    config = yaml.safe_load((ROOT / name).read_text())
    validate(fill_library_defaults(config), SCHEMA)
    return config


def test_dnf_sizes_scale_with_literals_and_digits_split_is_fixed():
    config = validated("configs/paper.yaml")
    dnf64 = dataset_options(config, "dnf64", 3)
    assert (dnf64["n_train"], dnf64["n_test"], dnf64["seed"]) == (200_000, 40_000, 3)
    assert dataset_options(config, "digits", 0) == dataset_options(config, "digits", 5)


def test_structured_variants_start_at_half_sparsity():
    config = validated()
    config["align"]["sparsities"] = [0.25, 0.5, 0.75]
    assert structure_sparsities(config, "2of4") == [0.5, 0.75]
    assert len(variants(config, "unstructured")) == 3 * len(config["align"]["methods"])


def test_targets_cover_every_figure_of_the_paper():
    targets = align_targets(validated())
    figures = {Path(t).stem for t in targets if "/figures/" in t}
    assert {"fig2", "fig4", "fig5", "fig6", "figA1", "figA3", "figA6", "figA7", "figA8"} <= figures
    assert {"fig1", "fig3", "figA2", "figA4", "figA5"} <= figures
    assert "results/align/tables/mip_solves.csv" in targets


def test_no_align_block_means_no_align_targets():
    config = validated()
    del config["align"]
    assert align_targets(config) == []
    check_align(config)


BAD = [
    ("tasks", {"dnf": {"kind": "dnf"}}, "align.tasks.dnf is a DNF task but has no 'literals'"),
    ("tasks", {"d": {"kind": "digits", "literals": 8}}, "'literals' does not apply"),
    ("sparsities", [0.99], "0.99 leaves no weight in a row of align.tasks.dnf16"),
    ("sparsities", [0.25], "no value of align.sparsities is at least 0.5"),
    ("heatmap_trial", 7, "align.heatmap_trial 7 is not in align.trials"),
    ("heatmap_sparsity", 0.6, "align.heatmap_sparsity 0.6 is not in align.sparsities"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD)
def test_semantic_checks_name_the_key(key, value, message):
    config = validated()
    config["align"][key] = value
    if key == "sparsities":
        config["align"]["heatmap_sparsity"] = value[0]
    with pytest.raises(ValueError, match=message):
        check_align(config)


PER_TRIAL_RULES = (
    "train_align_net",
    "estimate_align_hessian",
    "solve_align_mip",
    "sweep_align_magnitude",
    "prune_align_nets",
    "finetune_align_nets",
)
BASIS_RULES = ("estimate_align_basis", "solve_align_basis_mip")
GRID_RULES = (
    "align_accuracy_table",
    "align_basis_table",
    "align_mip_table",
    "align_training_table",
    "align_sweep_table",
    "plot_align_figure",
)


def upstreams(config: dict) -> dict[tuple, dict]:
    """Every ALIGN job's upstream param, keyed by (rule, task, structure, trial, estimator);
    a job without one of these wildcards has None there."""
    align = config["align"]
    grid = [
        (task, structure, trial)
        for task in tasks(config)
        for structure in align["structures"]
        for trial in align["trials"]
    ]
    jobs = {
        (rule, task, structure, trial, None): {
            "task": task,
            "structure": structure,
            "trial": str(trial),
        }
        for rule in PER_TRIAL_RULES
        for task, structure, trial in grid
    }
    jobs |= {
        (rule, task, structure, trial, estimator): {
            "task": task,
            "structure": structure,
            "trial": str(trial),
            "estimator": estimator,
        }
        for rule in BASIS_RULES
        for task, structure, trial in grid
        for estimator in ESTIMATORS
    }
    jobs |= {
        ("plot_align_picture", task, None, None, None): {"task": task} for task in tasks(config)
    }
    jobs |= {(rule, None, None, None, None): {} for rule in GRID_RULES}
    reads = declared_reads()
    return {job: upstream(config, reads[job[0]], wildcards) for job, wildcards in jobs.items()}


HESSIAN_READERS = {
    "prune_align_nets",
    "finetune_align_nets",
    "align_accuracy_table",
    "align_basis_table",
    "plot_align_figure",
    "plot_align_picture",
}
# (edit of the smoke preset's align block, whether a job's upstream must change, from the
# job's rule, task and estimator)
EDITS = {
    "dataset size": (
        lambda a: a["dnf"].update(train_per_16_literals=2000),
        lambda rule, task, estimator: task in ("dnf16", None),
    ),
    "training epochs": (
        lambda a: a["training"].update(epochs=7),
        lambda rule, task, estimator: rule != "train_align_net",
    ),
    "hessian damping": (
        lambda a: a["hessian"].update(damping=0.1),
        lambda rule, task, estimator: rule in HESSIAN_READERS,
    ),
    "digits hessian fraction": (
        lambda a: a["hessian"].update(digits_fraction=0.5),
        lambda rule, task, estimator: rule in HESSIAN_READERS and task in ("digits", None),
    ),
    "mip time limit": (
        lambda a: a["mip"].update(time_limit=0.1),
        lambda rule, task, estimator: rule in HESSIAN_READERS | {"align_mip_table"},
    ),
    "finetuning epochs": (
        lambda a: a["finetuning"].update(epochs=3),
        lambda rule, task, estimator: (
            rule in ("align_accuracy_table", "align_basis_table", "plot_align_figure")
        ),
    ),
    "sae basis penalty": (
        lambda a: a["basis"]["sae"].update(l1=0.1),
        # the basis job holds the settings among its own params; its readers, their lineage
        lambda rule, task, estimator: (
            (estimator == "sae" and rule != "estimate_align_basis") or rule in HESSIAN_READERS
        ),
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edit_changes_the_upstream_of_exactly_the_jobs_downstream_of_it(edit):
    change, downstream = EDITS[edit]
    config = validated("configs/smoke.yaml")
    before = upstreams(config)
    change(config["align"])
    after = upstreams(config)
    changed = {job for job in before if before[job] != after[job]}
    assert changed == {job for job in before if downstream(job[0], job[1], job[4])}


def test_without_an_estimated_basis_method_no_lineage_mentions_one():
    config = validated("configs/smoke.yaml")
    config["align"]["methods"] = ["mp", "mip", "flo"]

    def planned() -> dict:  # the basis rules' jobs are not in this config's DAG
        return {job: value for job, value in upstreams(config).items() if job[4] is None}

    plain = planned()
    config["align"]["basis"]["sae"]["l1"] = 0.5
    assert planned() == plain
    assert not any("basis" in Path(t).stem for t in align_targets(config))


def test_listing_tasks_or_trials_in_another_order_changes_no_upstream():
    config = validated("configs/smoke.yaml")
    config["align"]["trials"] = [0, 1]
    before = upstreams(config)
    config["align"]["trials"] = [1, 0]
    config["align"]["tasks"] = dict(reversed(config["align"]["tasks"].items()))
    assert upstreams(config) == before


def test_every_rule_that_reads_a_built_artifact_declares_its_lineage():
    declared = {rule for rule in declared_reads() if "align" in rule}
    assert declared == {*PER_TRIAL_RULES, *BASIS_RULES, *GRID_RULES, "plot_align_picture"}


SCHEMA_BAD = [
    ("tasks", {"dnf": {"kind": "dnf", "literals": 18}}, "18"),
    ("tasks", {"mnist": {"kind": "mnist"}}, "mnist"),
    ("sparsities", [1.0], "1.0"),
    ("trials", [], r"\[\]"),
    ("methods", ["random"], "random"),
    ("structures", ["1of4"], "1of4"),
    ("mip", {"time_limit": 0}, "0"),
    ("training", {"epoch": 3}, "epoch"),
]


@pytest.mark.parametrize(("key", "value", "message"), SCHEMA_BAD)
def test_schema_rejects_bad_align_values(key, value, message):
    config = copy.deepcopy(yaml.safe_load((ROOT / "config.yaml").read_text()))
    config["align"][key] = value
    with pytest.raises(WorkflowError, match=message):
        validate(fill_library_defaults(config), SCHEMA)
