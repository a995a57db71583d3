# Study LM, decoder-level analyses: every pair of SAE dictionaries matched by decoder
# cosine -> seed stability (RQ1), feature survival (RQ2), survival by firing-rate quintile
# (RQ4, Table 3) and its logistic fit.


rule match_dictionaries:
    input:
        a=fill(paths.SAE_FILE, name="sae.safetensors", cond="{cond_a}", seed="{seed_a}"),
        a_cfg=fill(paths.SAE_FILE, name="cfg.json", cond="{cond_a}", seed="{seed_a}"),
        b=fill(paths.SAE_FILE, name="sae.safetensors", cond="{cond_b}", seed="{seed_b}"),
        b_cfg=fill(paths.SAE_FILE, name="cfg.json", cond="{cond_b}", seed="{seed_b}"),
    output:
        paths.MATCH,
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
        all_stability_matches(config),
    output:
        table=lm_report(fill(paths.TABLE, name="seed_stability"), "RQ1 seed stability"),
        figure=lm_report(fill(paths.FIGURE, name="fig1"), "RQ1 seed stability"),
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
        matches=all_survival_matches(config),
        stability=fill(paths.TABLE, name="seed_stability"),
    output:
        table=lm_report(fill(paths.TABLE, name="survival"), "RQ2 feature survival"),
        figure=lm_report(fill(paths.FIGURE, name="fig2"), "RQ2 feature survival"),
    log:
        "results/logs/feature_survival.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        tau=config["analysis"]["primary_tau"],
    script:
        "../../scripts/feature_survival.py"


rule quintile_survival:
    input:
        dense=all_dense_metrics(config),
        matches=all_survival_matches(config),
        floor=all_floor_matches(config),
    output:
        table=lm_report(fill(paths.TABLE, name="table3"), "RQ4 fragility"),
        quintiles=lm_report(
            fill(paths.TABLE, name="quintile_survival"), "RQ4 fragility"
        ),
        figure=lm_report(fill(paths.FIGURE, name="fig4"), "RQ4 fragility"),
        by_method=lm_report(fill(paths.FIGURE, name="fig5"), "RQ4 fragility"),
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
        dense=all_reference_metrics(config),
        matches=all_logistic_matches(config),
        activation=[path for _, path in ACTIVATION_SURVIVAL],
    output:
        table=lm_report(fill(paths.TABLE, name="logistic_fit"), "RQ4 fragility"),
        summaries=paths.LOGISTIC_SUMMARIES,
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
