# Grid, paths and config checks come from the library (prunescope.plan) so that
# they are unit-tested; this file only adapts them to Snakemake.
# The Snakefile has put the library on this process's path; every job's script gets it
# through PYTHONPATH, in the project's venv or in a --use-conda environment alike.
import re
from pathlib import Path

from prunescope.runlog import export_to_jobs

export_to_jobs(Path(workflow.basedir) / "src")
from prunescope.plan import (
    NAME_PATTERN,
    TASK_PATTERN,
    ablation_condition,
    ablation_ranking,
    analysis_targets,
    canonical,
    capture_settings as plan_capture_settings,
    check_config,
    conditions,
    data_stage_targets,
    independent_seed,
    logistic_matches,
    match_path,
    model_dir,
    model_layers,
    models_by_source,
    perplexity_corpus,
    perplexity_path,
    pretrained_layers,
    pretrained_sae_input,
    pretrained_saes,
    pretrained_survival_path,
    pretrained_transfer_path,
    pruned_conditions,
    pruning_options,
    reverse_survival_path,
    saelens_export_settings,
    saelens_exports,
    sae_dir,
    stability_matches,
    survival_matches,
    survival_path,
    trained_sae_label,
    upstream_of,
)

from prunescope.align.plan import (
    align_figures,
    align_targets,
    check_align,
    dataset_options,
    dataset_path,
    each_trial,
    hessian_fraction,
    mip_path,
    needs_mip,
    net_dir,
    pruned_dir,
    structure_sparsities,
    tasks,
    upstream_of as align_upstream_of,
    variants,
)

check_config(config)
check_align(config)

# --- memory: each heavy job's estimated peak, refused now if it cannot fit, asked for as mem_mb

from prunescope.memory import (
    check_memory,
    hub_shapes,
    job_budgets,
    job_mem_mb,
    machine_memory,
    set_resources_mem_mb,
)

# hub models whose config.json is on this machine now; job_mem_mb adds the others later
HUB_SHAPES = hub_shapes(config)

# A job's own Snakemake (on a cluster node) leaves the check to the main process.
if workflow.is_main_process:
    check_memory(
        config,
        job_budgets(
            set_resources_mem_mb(workflow.resource_settings.overwrite_resources),
            machine_memory(),
        ),
        shapes=HUB_SHAPES,
    )


def estimated_mem_mb(rule):
    """The rule's mem_mb: prunescope.memory's estimate of its job's peak."""

    def mem_mb(wildcards, input):
        return job_mem_mb(
            config, rule, dict(wildcards.items()), list(input), HUB_SHAPES
        )

    return mem_mb


CONDITION = r"dense|[a-z0-9_]+-[0-9.]+"


def intermediate(path):
    """A large output no final target reads: temp() when keep_intermediates is false."""
    return path if config["keep_intermediates"] else temp(path)


# Model names go into a regular expression: "." must match only itself.
LOCAL_MODELS = [re.escape(m) for m in models_by_source(config, "local")] or ["__none__"]
HUB_MODELS = [re.escape(m) for m in models_by_source(config, "hf")] or ["__none__"]


wildcard_constraints:
    model=NAME_PATTERN,
    corpus=NAME_PATTERN,
    cond=CONDITION,
    method=r"[a-z0-9_]+",
    sparsity=r"0\.[0-9]+",
    split=r"train|calib|eval",
    layer=r"\d+",
    seed=r"\d+",
    task=TASK_PATTERN,
    trial=r"\d+",
    structure=r"unstructured|2of4",


def model_spec(wildcards):
    return config["models"][wildcards.model]


def capture_settings(wildcards):
    """Readers of a cache get it too, so an edit reaches them even when the recapture dies."""
    return plan_capture_settings(config, wildcards.model, wildcards.cond)


def upstream(rule):
    """The lineage of what a job reads, so an upstream edit reruns it even when the job
    that would rewrite its input dies (see prunescope.plan.upstream_of)."""

    def lineage(wildcards):
        return upstream_of(config, rule, wildcards.model, checkpoint_read(wildcards))

    return lineage


def model_corpus_split(split):
    def inputs(wildcards):
        return f"results/corpus/{model_spec(wildcards)['corpus']}/{split}.jsonl"

    return inputs


def perplexity_corpus_file(wildcards):
    return f"results/corpus/{perplexity_corpus(config, wildcards.model)}/eval.jsonl"


# --- analyses ---------------------------------------------------------------------------------

REFERENCE_SEED = config["analysis"]["reference_seed"]


def _each(paths_for, conds_for=conditions):
    """Collect ``paths_for(model, layer, cond)`` over the whole grid."""
    return [
        path
        for model, layer in model_layers(config)
        for cond in conds_for(config, model)
        for path in paths_for(config, model, layer, cond)
    ]


all_stability_matches = _each(stability_matches)
all_survival_matches = _each(survival_matches, pruned_conditions)
all_logistic_matches = _each(logistic_matches, pruned_conditions)
# the dense seed floor: every pair of dense seeds (RQ1's dense stability matches)
all_floor_matches = _each(stability_matches, lambda c, m: ["dense"])
all_dense_metrics = [
    f"{sae_dir(model, 'dense', layer, seed)}/metrics.json"
    for model, layer in model_layers(config)
    for seed in config["sae"]["seeds"]
]
all_reference_metrics = [
    f"{sae_dir(model, 'dense', layer, REFERENCE_SEED)}/metrics.json"
    for model, layer in model_layers(config)
]
# (model, layer, pruned condition) and its activation-level survival table
ACTIVATION_SURVIVAL = [
    ((model, layer, cond), survival_path(model, layer, cond))
    for model, layer in model_layers(config)
    for cond in pruned_conditions(config, model)
]


# The same per (model, layer, condition, SAE), for the dense SAE trained here and for each
# SAE trained elsewhere (models.<m>.pretrained_saes)
TRAINED_SAE = trained_sae_label(config)
SURVIVAL_BY_SAE = [((*key, TRAINED_SAE), path) for key, path in ACTIVATION_SURVIVAL] + [
    (
        (model, layer, cond, pretrained_saes(config, model)[layer]["label"]),
        pretrained_survival_path(model, layer, cond),
    )
    for model, layer in pretrained_layers(config)
    for cond in pruned_conditions(config, model)
]


# (model, layer, condition) and its reverse view at the independent seed (dense: the floor)
NEW_FEATURES = [
    (
        (model, layer, cond),
        reverse_survival_path(model, layer, cond, independent_seed(config)),
    )
    for model, layer in model_layers(config)
    for cond in conditions(config, model)
]


def ablation_ranking_file(wildcards):
    """What ranks the ablated features: a match or an activation-survival table."""
    return ablation_ranking(
        config, wildcards.model, wildcards.layer, wildcards.cond, wildcards.side
    )


def dense_capture_settings(wildcards):
    """What the dense cache's content follows, for a job that reads it beside a pruned one."""
    return plan_capture_settings(config, wildcards.model, "dense")


all_transfer_results = _each(
    lambda c, m, l, cond: [f"results/transfer/{m}/L{l}/{cond}.json"]
)
all_pretrained_transfer_results = [
    pretrained_transfer_path(model, layer, cond)
    for model, layer in pretrained_layers(config)
    for cond in conditions(config, model)
]
all_perplexities = [
    perplexity_path(model, cond)
    for model in config["models"]
    for cond in conditions(config, model)
]


def all_sae_files(filename):
    return _each(
        lambda c, m, l, cond: [
            f"{sae_dir(m, cond, l, seed)}/{filename}" for seed in c["sae"]["seeds"]
        ]
    )


all_ablation_results = [
    f"results/ablation/{model}/L{layer}/{ablation_condition(config, model)}/{side}.json"
    for model, layer in model_layers(config)
    for side in ("dense", "pruned")
]


def pretrained_sae(field):
    """One field (source, label) of the configured pretrained SAE of the job's model and layer."""

    def value(wildcards):
        entry = pretrained_saes(config, wildcards.model)[int(wildcards.layer)]
        return canonical(entry[field])

    return value


def reference_sae(cond, filename):
    def path(wildcards):
        return f"{sae_dir(wildcards.model, cond, wildcards.layer, REFERENCE_SEED)}/{filename}"

    return path


def reference_match(wildcards):
    return match_path(
        wildcards.model,
        wildcards.layer,
        "dense",
        REFERENCE_SEED,
        wildcards.cond,
        REFERENCE_SEED,
    )


def ablated_sae(filename):
    def path(wildcards):
        cond = "dense" if wildcards.side == "dense" else wildcards.cond
        return f"{sae_dir(wildcards.model, cond, wildcards.layer, REFERENCE_SEED)}/{filename}"

    return path


def checkpoint_read(wildcards):
    """The condition whose checkpoint a job reads: an ablation's side picks dense or pruned."""
    if wildcards.get("side") == "dense":
        return "dense"
    return wildcards.get("cond", "dense")


def ablated_model(wildcards):
    return model_dir(wildcards.model, checkpoint_read(wildcards))


# --- Study ALIGN --------------------------------------------------------------------------------

ALIGN = config.get("align") or {}
ALIGN_FIGURES = align_figures(config) or ["__none__"]


def align_upstream(rule):
    """The lineage of what an ALIGN job reads, so an upstream edit reruns it even when the
    job that would rewrite its input dies (see prunescope.align.plan.upstream_of)."""

    def lineage(wildcards):
        return align_upstream_of(config, rule, dict(wildcards.items()))

    return lineage


def align_mip_solutions(wildcards):
    """The MIP oracle's solutions at every sparsity of the structure, when a method needs them."""
    if not needs_mip(config):
        return []
    return [
        mip_path(wildcards.task, wildcards.structure, wildcards.trial, s)
        for s in structure_sparsities(config, wildcards.structure)
    ]


def all_align_results(filename):
    return each_trial(config, lambda t, s, i: [f"{pruned_dir(t, s, i)}/{filename}"])


def all_align_mip(wildcards):
    if not needs_mip(config):
        return []
    return each_trial(
        config,
        lambda t, s, i: [
            mip_path(t, s, i, sp) for sp in structure_sparsities(config, s)
        ],
    )


def all_align_trials(pattern):
    return [
        pattern.format(task=task, trial=trial)
        for task in tasks(config)
        for trial in ALIGN.get("trials", [])
    ]
