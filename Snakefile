# prunescope: what weight pruning does to the features a network computes with.
#
#   snakemake --cores 8 --resources gpu=1          # everything the config asks for
#   snakemake -n                                    # dry-run of the whole DAG
#   snakemake --configfile configs/smoke.yaml ...   # switch preset
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The library is importable by this process and, through PYTHONPATH, by every job.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from prunescope.configcheck import check_config_file
from prunescope.checks import check_names, check_removed_keys
from prunescope.settings import fill_library_defaults

# A preset given with --configfile replaces the default instead of merging into it.
if not workflow.overwrite_configfiles:
    check_config_file("config.yaml")

    configfile: "config.yaml"


check_names(config)
check_removed_keys(config)
# defaults: the library's settings dataclasses' for the keys they own, then the schema's
fill_library_defaults(config)
validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/quality.smk"
include: "workflow/rules/decoder_survival.smk"
include: "workflow/rules/activation_survival.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/browser.smk"
include: "workflow/rules/report.smk"


# feature-aware pruning and its diagnostics, when the config asks for them
if config["pruning"].get("feature") is not None:

    include: "workflow/rules/feature.smk"


if config.get("align"):

    include: "workflow/rules/align_common.smk"
    include: "workflow/rules/align.smk"
    include: "workflow/rules/align_tables.smk"


rule all:
    default_target: True
    input:
        paths.CONFIG_RECORD,
        data_stage_targets(config),
        saelens_exports(config),
        analysis_targets(config),
        align_targets(config),
