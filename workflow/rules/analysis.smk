# Study LM, analyses: dictionary matches -> RQ1-RQ5 tables and figures.


rule match_dictionaries:
    input:
        a="results/sae/{model}/{cond_a}/L{layer}/seed{seed_a}/sae.safetensors",
        a_cfg="results/sae/{model}/{cond_a}/L{layer}/seed{seed_a}/cfg.json",
        b="results/sae/{model}/{cond_b}/L{layer}/seed{seed_b}/sae.safetensors",
        b_cfg="results/sae/{model}/{cond_b}/L{layer}/seed{seed_b}/cfg.json",
    output:
        "results/matches/{model}/L{layer}/{cond_a}_seed{seed_a}__{cond_b}_seed{seed_b}.h5",
    log:
        "results/logs/match_dictionaries/{model}/L{layer}/{cond_a}_seed{seed_a}__{cond_b}_seed{seed_b}.log",
    benchmark:
        "results/benchmarks/match_dictionaries/{model}/L{layer}/{cond_a}_seed{seed_a}__{cond_b}_seed{seed_b}.tsv"
    wildcard_constraints:
        cond_a=CONDITION,
        cond_b=CONDITION,
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("match_dictionaries"),
    params:
        taus=config["analysis"]["taus"],
        block_rows=config["analysis"]["match_block_rows"],
        space=config["analysis"]["match_space"],
        device=config["device"],
    script:
        "../../scripts/match_dictionaries.py"


rule seed_stability:
    input:
        all_stability_matches,
    output:
        table=report(
            "results/tables/seed_stability.csv",
            caption="../report/seed_stability.rst",
            category="Study LM",
            subcategory="RQ1 seed stability",
        ),
        figure=report(
            "results/figures/fig1.png",
            caption="../report/fig1.rst",
            category="Study LM",
            subcategory="RQ1 seed stability",
        ),
    log:
        "results/logs/seed_stability.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        tau=config["analysis"]["primary_tau"],
    script:
        "../../scripts/seed_stability.py"


rule feature_survival:
    input:
        matches=all_survival_matches,
        stability="results/tables/seed_stability.csv",
    output:
        table=report(
            "results/tables/survival.csv",
            caption="../report/survival.rst",
            category="Study LM",
            subcategory="RQ2 feature survival",
        ),
        figure=report(
            "results/figures/fig2.png",
            caption="../report/fig2.rst",
            category="Study LM",
            subcategory="RQ2 feature survival",
        ),
    log:
        "results/logs/feature_survival.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        tau=config["analysis"]["primary_tau"],
    script:
        "../../scripts/feature_survival.py"


rule evaluate_transfer:
    input:
        sae=reference_sae("dense", "sae.safetensors"),
        sae_cfg=reference_sae("dense", "cfg.json"),
        activations="results/activations/{model}/{cond}/L{layer}.h5",
    output:
        "results/transfer/{model}/L{layer}/{cond}.json",
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
        sae="results/pretrained_sae/{model}/L{layer}",
        activations="results/activations/{model}/{cond}/L{layer}.h5",
    output:
        "results/transfer/{model}/L{layer}/pretrained/{cond}.json",
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
        all_transfer_results + all_pretrained_transfer_results,
    output:
        table=report(
            "results/tables/table2.csv",
            caption="../report/table2.rst",
            category="Study LM",
            subcategory="RQ3 transfer",
        ),
        figure=report(
            "results/figures/fig3.png",
            caption="../report/fig3.rst",
            category="Study LM",
            subcategory="RQ3 transfer",
        ),
    log:
        "results/logs/transfer_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/transfer_table.py"


rule activation_survival:
    input:
        sae=reference_sae("dense", "sae.safetensors"),
        sae_cfg=reference_sae("dense", "cfg.json"),
        dense="results/activations/{model}/dense/L{layer}.h5",
        pruned="results/activations/{model}/{cond}/L{layer}.h5",
    output:
        "results/survival/{model}/L{layer}/{cond}.csv",
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
        device=config["device"],
    script:
        "../../scripts/activation_survival.py"


rule pretrained_activation_survival:
    input:
        sae="results/pretrained_sae/{model}/L{layer}",
        dense="results/activations/{model}/dense/L{layer}.h5",
        pruned="results/activations/{model}/{cond}/L{layer}.h5",
    output:
        "results/survival/{model}/L{layer}/pretrained/{cond}.csv",
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
        device=config["device"],
    script:
        "../../scripts/activation_survival.py"


rule activation_survival_table:
    input:
        [path for _, path in SURVIVAL_BY_SAE],
    output:
        survival=report(
            "results/tables/activation_survival.csv",
            caption="../report/activation_survival.rst",
            category="Study LM",
            subcategory="RQ2 feature survival",
        ),
        table=report(
            "results/tables/table3_activation.csv",
            caption="../report/table3_activation.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
        quintiles=report(
            "results/tables/activation_quintile_survival.csv",
            caption="../report/activation_quintile_survival.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
        figure=report(
            "results/figures/fig4_activation.png",
            caption="../report/fig4_activation.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
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
        sae="results/sae/{model}/{cond}/L{layer}/seed{seed}/sae.safetensors",
        sae_cfg="results/sae/{model}/{cond}/L{layer}/seed{seed}/cfg.json",
        dense_sae=reference_sae("dense", "sae.safetensors"),
        dense_sae_cfg=reference_sae("dense", "cfg.json"),
        dense="results/activations/{model}/dense/L{layer}.h5",
        activations="results/activations/{model}/{cond}/L{layer}.h5",
    output:
        "results/survival/{model}/L{layer}/reverse/{cond}_seed{seed}.csv",
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
        device=config["device"],
    script:
        "../../scripts/reverse_survival.py"


rule new_feature_table:
    input:
        [path for _, path in NEW_FEATURES],
    output:
        table=report(
            "results/tables/new_features.csv",
            caption="../report/new_features.rst",
            category="Study LM",
            subcategory="RQ2 feature survival",
        ),
    log:
        "results/logs/new_feature_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        conditions=[list(key) for key, _ in NEW_FEATURES],
        taus=config["analysis"]["correlation_taus"],
    script:
        "../../scripts/new_feature_table.py"


rule quintile_survival:
    input:
        dense=all_dense_metrics,
        matches=all_survival_matches,
        floor=all_floor_matches,
    output:
        table=report(
            "results/tables/table3.csv",
            caption="../report/table3.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
        quintiles=report(
            "results/tables/quintile_survival.csv",
            caption="../report/quintile_survival.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
        figure=report(
            "results/figures/fig4.png",
            caption="../report/fig4.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
        by_method=report(
            "results/figures/fig5.png",
            caption="../report/fig5.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
    log:
        "results/logs/quintile_survival.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        taus=config["analysis"]["taus"],
        primary_tau=config["analysis"]["primary_tau"],
        bootstrap=config["analysis"]["bootstrap"],
        seed=config["analysis"]["reference_seed"],
    script:
        "../../scripts/quintile_survival.py"


rule logistic_fit:
    input:
        dense=all_reference_metrics,
        matches=all_logistic_matches,
        activation=[path for _, path in ACTIVATION_SURVIVAL],
    output:
        table=report(
            "results/tables/logistic_fit.csv",
            caption="../report/logistic_fit.rst",
            category="Study LM",
            subcategory="RQ4 fragility",
        ),
        summaries="results/tables/logistic_fit.txt",
    log:
        "results/logs/logistic_fit.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        taus=config["analysis"]["logistic_taus"],
        correlation_taus=config["analysis"]["logistic_correlation_taus"],
        conditions=[list(key) for key, _ in ACTIVATION_SURVIVAL],
        seed=config["analysis"]["reference_seed"],
    script:
        "../../scripts/logistic_fit.py"


rule ablate_features:
    input:
        ranking=ablation_ranking_file,
        sae=ablated_sae("sae.safetensors"),
        sae_cfg=ablated_sae("cfg.json"),
        sae_metrics=ablated_sae("metrics.json"),
        model=ablated_model,
        prompts=model_corpus_split("eval"),
    output:
        "results/ablation/{model}/L{layer}/{cond}/{side}.json",
    log:
        "results/logs/ablate_features/{model}/L{layer}/{cond}/{side}.log",
    benchmark:
        "results/benchmarks/ablate_features/{model}/L{layer}/{cond}/{side}.tsv"
    wildcard_constraints:
        side="dense|pruned",
    conda:
        "../../envs/prunescope.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        ablation=canonical(config["analysis"]["ablation"]),
        dtype=lambda wc: model_spec(wc)["dtype"],
        upstream=upstream("ablate_features"),
        device=config["device"],
    script:
        "../../scripts/ablate_features.py"


rule ablation_table:
    input:
        all_ablation_results,
    output:
        table=report(
            "results/tables/table4.csv",
            caption="../report/table4.rst",
            category="Study LM",
            subcategory="RQ5 causal relevance",
        ),
        figure=report(
            "results/figures/fig6.png",
            caption="../report/fig6.rst",
            category="Study LM",
            subcategory="RQ5 causal relevance",
        ),
    log:
        "results/logs/ablation_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/ablation_table.py"


rule perplexity_table:
    input:
        all_perplexities,
    output:
        report(
            "results/tables/table1.csv",
            caption="../report/table1.rst",
            category="Study LM",
            subcategory="Model quality",
        ),
    log:
        "results/logs/perplexity_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/perplexity_table.py"


rule sae_quality_table:
    input:
        metrics=all_sae_files("metrics.json"),
        cfgs=all_sae_files("cfg.json"),
    output:
        report(
            "results/tables/tableB1.csv",
            caption="../report/tableB1.rst",
            category="Study LM",
            subcategory="SAE quality",
        ),
    log:
        "results/logs/sae_quality_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/sae_quality_table.py"
