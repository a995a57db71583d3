# Study LM, how good the models and SAEs are: perplexity (Table 1), the dense SAEs'
# reconstruction of pruned activations (transfer, Table 2) and every SAE's quality (Table B1).


rule perplexity_table:
    input:
        all_perplexities(config),
    output:
        lm_report(fill(paths.TABLE, name="table1"), "Model quality"),
    log:
        "results/logs/perplexity_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/perplexity_table.py"


rule evaluate_transfer:
    input:
        sae=reference_sae("sae.safetensors"),
        sae_cfg=reference_sae("cfg.json"),
        activations=paths.ACTIVATIONS,
    output:
        paths.TRANSFER,
    log:
        "results/logs/evaluate_transfer/{model}/L{layer}/{cond}.log",
    benchmark:
        "results/benchmarks/evaluate_transfer/{model}/L{layer}/{cond}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        label=TRAINED_SAE,
        batch_size=config["sae"]["batch_size"],
        capture=capture_settings,
        device=config["device"],
    script:
        "../../scripts/evaluate_transfer.py"


rule evaluate_pretrained_transfer:
    input:
        sae=paths.PRETRAINED_SAE,
        activations=paths.ACTIVATIONS,
    output:
        paths.PRETRAINED_TRANSFER,
    log:
        "results/logs/evaluate_pretrained_transfer/{model}/L{layer}/{cond}.log",
    benchmark:
        "results/benchmarks/evaluate_pretrained_transfer/{model}/L{layer}/{cond}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        batch_size=config["sae"]["batch_size"],
        capture=capture_settings,
        device=config["device"],
    script:
        "../../scripts/evaluate_pretrained_transfer.py"


rule transfer_table:
    input:
        all_transfer_results(config),
    output:
        table=lm_report(fill(paths.TABLE, name="table2"), "RQ3 transfer"),
        figure=lm_report(fill(paths.FIGURE, name="fig3"), "RQ3 transfer"),
    log:
        "results/logs/transfer_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/transfer_table.py"


rule sae_quality_table:
    input:
        metrics=all_sae_files(config, "metrics.json"),
        cfgs=all_sae_files(config, "cfg.json"),
    output:
        lm_report(fill(paths.TABLE, name="tableB1"), "SAE quality"),
    log:
        "results/logs/sae_quality_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/sae_quality_table.py"
