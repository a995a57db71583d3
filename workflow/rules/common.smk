# Grid, paths and config checks come from the library (prunescope.plan) so that
# they are unit-tested; this file only adapts them to Snakemake.
import sys
from pathlib import Path

# The library is importable by this process and by every job's script, in the
# project's venv or in a --use-conda environment alike.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from prunescope.runlog import export_to_jobs

export_to_jobs(Path(workflow.basedir) / "src")
from prunescope.plan import (
    activation_path,
    check_config,
    conditions,
    data_stage_targets,
    model_dir,
    models_by_source,
    perplexity_corpus,
    pruning_options,
    sae_dir,
)

check_config(config)

LOCAL_MODELS = models_by_source(config, "local") or ["__none__"]
HUB_MODELS = models_by_source(config, "hf") or ["__none__"]


wildcard_constraints:
    model=r"[A-Za-z0-9_.]+",
    corpus=r"[A-Za-z0-9_.]+",
    cond=r"dense|[a-z0-9_]+-[0-9.]+",
    method=r"[a-z0-9_]+",
    sparsity=r"0\.[0-9]+",
    split=r"train|calib|eval",
    layer=r"\d+",
    seed=r"\d+",


def model_spec(wildcards):
    return config["models"][wildcards.model]


def model_corpus_split(split):
    def inputs(wildcards):
        return f"results/corpus/{model_spec(wildcards)['corpus']}/{split}.jsonl"

    return inputs


def perplexity_corpus_file(wildcards):
    return f"results/corpus/{perplexity_corpus(config, wildcards.model)}/eval.jsonl"
