# Grid, paths, lineage and config checks come from the library (prunescope.plan, paths,
# lineage, checks) so that they are unit-tested; this file only adapts them to Snakemake.
# The Snakefile has put the library on this process's path; every job's script gets it
# through PYTHONPATH, in the project's venv or in a --use-conda environment alike.
import re
from pathlib import Path

from prunescope.runlog import export_to_jobs

export_to_jobs(Path(workflow.basedir) / "src")
from prunescope import paths
from prunescope.paths import fill
from prunescope.checks import check_config
from prunescope.conditions import (
    NAME_PATTERN,
    TASK_PATTERN,
    canonical,
    models_by_source,
)
from prunescope.lineage import (
    basis_sae_settings,
    capture_settings as lineage_capture_settings,
    feature_bases,
    job_checkpoint,
    checkpoint_read,
    dense_checkpoint,
    model_corpus,
    perplexity_corpus,
    perplexity_text,
    pruning_options,
    tokenizer_settings,
    upstream,
)
from prunescope.plan import (
    ablation_ranking,
    activation_survival_inputs,
    all_ablation_results,
    all_dense_metrics,
    all_floor_matches,
    all_logistic_matches,
    all_perplexities,
    all_reference_metrics,
    all_sae_files,
    all_stability_matches,
    all_survival_matches,
    all_transfer_results,
    all_distortions,
    analysis_targets,
    data_stage_targets,
    feature_site_files,
    new_feature_inputs,
    pruning_bases,
    pretrained_sae_input,
    pretrained_saes,
    saelens_export_settings,
    saelens_exports,
    survival_inputs_by_sae,
    feature_page_files,
    findings_inputs,
    top_activation_settings,
    trained_sae_label,
)
from prunescope.align.plan import align_targets, check_align

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
    site=r"attn_in|mlp_in",


def model_spec(wildcards):
    return config["models"][wildcards.model]


def capture_settings(wildcards):
    """Readers of a cache get it too, so an edit reaches them even when the recapture dies."""
    return lineage_capture_settings(config, wildcards.model, wildcards.cond)


def dense_capture_settings(wildcards):
    """What the dense cache's content follows, for a job that reads it beside a pruned one."""
    return lineage_capture_settings(config, wildcards.model, "dense")


def reads(**lineages):
    """The ``upstream`` param of a rule that reads what ``lineages`` name, so an upstream
    edit reruns its jobs even when the job that would rewrite an input dies (see
    prunescope.lineage)."""

    def lineage(wildcards):
        return upstream(config, lineages, dict(wildcards.items()))

    return lineage


def model_corpus_split(split):
    def inputs(wildcards):
        return fill(
            paths.CORPUS_SPLIT, split=split, corpus=model_spec(wildcards)["corpus"]
        )

    return inputs


def perplexity_corpus_file(wildcards):
    corpus = perplexity_corpus(config, wildcards.model)
    return fill(paths.CORPUS_SPLIT, split="eval", corpus=corpus)


def lm_report(path, topic):
    """An output shown in the HTML report under Study LM, captioned by the file of its name."""
    caption = f"../report/{Path(path).stem}.rst"
    return report(path, caption=caption, category="Study LM", subcategory=topic)


# --- analyses ---------------------------------------------------------------------------------

REFERENCE_SEED = config["analysis"]["reference_seed"]
TRAINED_SAE = trained_sae_label(config)
ACTIVATION_SURVIVAL = activation_survival_inputs(config)
SURVIVAL_BY_SAE = survival_inputs_by_sae(config)
NEW_FEATURES = new_feature_inputs(config)


def ablation_ranking_file(wildcards):
    """What ranks the ablated features: a match or an activation-survival table."""
    return ablation_ranking(
        config, wildcards.model, wildcards.layer, wildcards.cond, wildcards.side
    )


def pretrained_sae(field):
    """One field (source, label) of the configured pretrained SAE of the job's model and layer."""

    def value(wildcards):
        entry = pretrained_saes(config, wildcards.model)[int(wildcards.layer)]
        return canonical(entry[field])

    return value


def reference_sae(filename):
    """A file of the dense reference SAE of the job's model and layer."""
    return fill(paths.SAE_FILE, name=filename, cond="dense", seed=REFERENCE_SEED)


def ablated_sae(filename):
    def path(wildcards):
        cond = checkpoint_read(dict(wildcards.items()))
        return fill(
            paths.SAE_FILE,
            name=filename,
            model=wildcards.model,
            cond=cond,
            layer=wildcards.layer,
            seed=REFERENCE_SEED,
        )

    return path


def ablated_model(wildcards):
    cond = checkpoint_read(dict(wildcards.items()))
    return fill(paths.MODEL, model=wildcards.model, cond=cond)


# --- the feature browser ----------------------------------------------------------------------


def findings_files(wildcards):
    """The tables (and Study ALIGN's pictures) the findings page reads."""
    return findings_inputs(config)


def feature_page_conditions(wildcards):
    """Per pruned condition, the files its section of the feature page reads."""
    return feature_page_files(config, wildcards.model, wildcards.layer)


def feature_page_inputs(wildcards):
    """The same files as named inputs (``section{i}_{kind}``), so each is a dependency."""
    sections = feature_page_conditions(wildcards).values()
    return {
        f"section{i}_{kind}": path
        for i, files in enumerate(sections)
        for kind, path in files.items()
    }
