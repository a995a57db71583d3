# prunescope: what weight pruning does to the features a network computes with.
#
#   snakemake --cores 8 --resources gpu=1          # everything the config asks for
#   snakemake -n                                    # dry-run of the whole DAG
#   snakemake --configfile configs/smoke.yaml ...   # switch preset
from snakemake.utils import min_version, validate

min_version("9.0")


# A preset given with --configfile replaces the default instead of merging into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


if config.get("align"):

    include: "workflow/rules/align.smk"


rule all:
    default_target: True
    input:
        "results/config.yaml",
        data_stage_targets(config),
        analysis_targets(config),
        align_targets(config),
