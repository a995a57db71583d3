# Study ALIGN's inputs and params that depend on the config (prunescope.align.plan
# adapted to Snakemake), for align.smk and align_tables.smk.

from prunescope.align.methods import ESTIMATORS
from prunescope.align.plan import (
    align_figures,
    basis_estimators,
    dataset_options,
    each_trial,
    hessian_fraction,
    needs_mip,
    structure_sparsities,
    tasks,
    variants,
)

# what the rules read, for their upstream params
from prunescope.align.plan import (
    basis_of,
    dataset_of,
    every_basis,
    every_mip_solution,
    every_net,
    every_sweep,
    every_variant,
    heatmap_pruned_of,
    hessian_of,
    mip_solutions_of,
    net_of,
    pruned_of,
)

ALIGN = config.get("align") or {}
ALIGN_FIGURES = align_figures(config) or ["__none__"]
HEATMAP_TRIAL = ALIGN.get("heatmap_trial")


def align_report(path, caption, topic):
    """An output shown in the HTML report under Study ALIGN, captioned by report/<caption>.rst."""
    caption = f"../report/{caption}.rst"
    return report(path, caption=caption, category="Study ALIGN", subcategory=topic)


def align_mip_solutions(wildcards):
    """The MIP oracle's solutions at every sparsity of the structure, when a method needs them."""
    if not needs_mip(config):
        return []
    return [
        paths.mip_path(wildcards.task, wildcards.structure, wildcards.trial, s)
        for s in structure_sparsities(config, wildcards.structure)
    ]


def align_basis_mip_solutions(wildcards):
    """The MIP's solutions with every estimated basis the methods use, at every sparsity."""
    return [
        paths.basis_mip_path(
            wildcards.task, wildcards.structure, wildcards.trial, estimator, s
        )
        for estimator in basis_estimators(config)
        for s in structure_sparsities(config, wildcards.structure)
    ]


def all_basis_recoveries(wildcards):
    return [
        fill(paths.BASIS_RECOVERY, task=task, trial=trial, estimator=estimator)
        for task in tasks(config)
        for trial in ALIGN.get("trials", [])
        for estimator in basis_estimators(config)
    ]


def all_align_results(filename):
    return each_trial(
        config,
        lambda t, s, i: [
            fill(paths.PRUNED_FILE, name=filename, task=t, structure=s, trial=i)
        ],
    )


def all_align_mip(wildcards):
    if not needs_mip(config):
        return []
    return each_trial(
        config,
        lambda t, s, i: [
            paths.mip_path(t, s, i, sp) for sp in structure_sparsities(config, s)
        ],
    )


def heatmap_variants(filename):
    """A file of the unstructured variants of the heat-map trial of the job's task."""
    return fill(
        paths.PRUNED_FILE, name=filename, structure="unstructured", trial=HEATMAP_TRIAL
    )


def all_align_trials(pattern):
    """``pattern`` filled in for every task and trial."""
    return [
        fill(pattern, task=task, trial=trial)
        for task in tasks(config)
        for trial in ALIGN.get("trials", [])
    ]
