# Study LM, activation-level analyses: does a dense feature's activation pattern survive
# in the pruned model's activations (beside a matched-noise control), for the SAE trained
# here and each SAE trained elsewhere; and the reverse view, the pruned SAEs' new features.


rule activation_survival:
    input:
        sae=reference_sae("sae.safetensors"),
        sae_cfg=reference_sae("cfg.json"),
        dense=fill(paths.ACTIVATIONS, cond="dense"),
        pruned=paths.ACTIVATIONS,
    output:
        table=paths.SURVIVAL,
        top=paths.TOP_ACTIVATIONS,
    log:
        "results/logs/activation_survival/{model}/L{layer}/{cond}.log",
    benchmark:
        "results/benchmarks/activation_survival/{model}/L{layer}/{cond}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("activation_survival"),
    params:
        capture=capture_settings,
        dense_capture=dense_capture_settings,
        noise_seed=config["analysis"]["noise_seed"],
        browser=top_activation_settings(config),
        device=config["device"],
    script:
        "../../scripts/activation_survival.py"


rule pretrained_activation_survival:
    input:
        sae=paths.PRETRAINED_SAE,
        dense=fill(paths.ACTIVATIONS, cond="dense"),
        pruned=paths.ACTIVATIONS,
    output:
        table=paths.PRETRAINED_SURVIVAL,
        top=paths.PRETRAINED_TOP_ACTIVATIONS,
    log:
        "results/logs/pretrained_activation_survival/{model}/L{layer}/{cond}.log",
    benchmark:
        "results/benchmarks/pretrained_activation_survival/{model}/L{layer}/{cond}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("activation_survival"),
    params:
        capture=capture_settings,
        dense_capture=dense_capture_settings,
        noise_seed=config["analysis"]["noise_seed"],
        browser=top_activation_settings(config),
        device=config["device"],
    script:
        "../../scripts/activation_survival.py"


rule activation_survival_table:
    input:
        [path for _, path in SURVIVAL_BY_SAE],
    output:
        survival=lm_report(
            fill(paths.TABLE, name="activation_survival"), "RQ2 feature survival"
        ),
        table=lm_report(fill(paths.TABLE, name="table3_activation"), "RQ4 fragility"),
        quintiles=lm_report(
            fill(paths.TABLE, name="activation_quintile_survival"), "RQ4 fragility"
        ),
        figure=lm_report(fill(paths.FIGURE, name="fig4_activation"), "RQ4 fragility"),
    log:
        "results/logs/activation_survival_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        conditions=[list(key) for key, _ in SURVIVAL_BY_SAE],
        taus=config["analysis"]["correlation_taus"],
        primary_tau=config["analysis"]["primary_correlation_tau"],
        bootstrap=config["analysis"]["bootstrap"],
        seed=config["analysis"]["reference_seed"],
    script:
        "../../scripts/activation_survival_table.py"


rule reverse_survival:
    input:
        sae=fill(paths.SAE_FILE, name="sae.safetensors"),
        sae_cfg=fill(paths.SAE_FILE, name="cfg.json"),
        dense_sae=reference_sae("sae.safetensors"),
        dense_sae_cfg=reference_sae("cfg.json"),
        dense=fill(paths.ACTIVATIONS, cond="dense"),
        activations=paths.ACTIVATIONS,
    output:
        table=paths.REVERSE_SURVIVAL,
        top=paths.REVERSE_TOP_ACTIVATIONS,
    log:
        "results/logs/reverse_survival/{model}/L{layer}/{cond}_seed{seed}.log",
    benchmark:
        "results/benchmarks/reverse_survival/{model}/L{layer}/{cond}_seed{seed}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("reverse_survival"),
    params:
        taus=config["analysis"]["correlation_taus"],
        capture=capture_settings,
        dense_capture=dense_capture_settings,
        browser=top_activation_settings(config),
        device=config["device"],
    script:
        "../../scripts/reverse_survival.py"


rule new_feature_table:
    input:
        [path for _, path in NEW_FEATURES],
    output:
        table=lm_report(fill(paths.TABLE, name="new_features"), "RQ2 feature survival"),
    log:
        "results/logs/new_feature_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        conditions=[list(key) for key, _ in NEW_FEATURES],
        taus=config["analysis"]["correlation_taus"],
    script:
        "../../scripts/new_feature_table.py"
