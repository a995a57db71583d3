# What the HTML report shows besides results: the configuration the run used.


rule record_config:
    output:
        report(
            paths.CONFIG_RECORD,
            caption="../report/config.rst",
            category="Run configuration",
        ),
    log:
        "results/logs/record_config.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        config=canonical(config),
    script:
        "../../scripts/record_config.py"
