# Feature-aware pruning (beyond the papers; pruning.feature): dense SAEs on the streams each
# block reads (attn_in, mlp_in) -> feature bases as the projections see them -> the feature
# and feature_hybrid prunes (lm.smk's prune_model reads the bases) and every pruned
# condition's feature-space vs weight-space distortion -> table and figure.

FEATURE_SEED = config["pruning"]["feature"]["seed"]
BASIS_SAE = basis_sae_settings(config)
DISTORTIONS = all_distortions(config)


rule capture_site_activations:
    input:
        model=fill(paths.MODEL, cond="dense"),
        train=model_corpus_split("train"),
        eval=model_corpus_split("eval"),
    output:
        intermediate(paths.SITE_ACTIVATIONS),
    log:
        "results/logs/capture_site_activations/{model}/L{layer}.{site}.log",
    benchmark:
        "results/benchmarks/capture_site_activations/{model}/L{layer}.{site}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("capture_activations"),
    params:
        settings=dense_capture_settings,
        device=config["device"],
    script:
        "../../scripts/capture_activations.py"


rule train_site_sae:
    input:
        paths.SITE_ACTIVATIONS,
    output:
        weights=fill(paths.SITE_SAE_FILE, name="sae.safetensors"),
        cfg=fill(paths.SITE_SAE_FILE, name="cfg.json"),
        metrics=fill(paths.SITE_SAE_FILE, name="metrics.json"),
    log:
        "results/logs/train_site_sae/{model}/L{layer}.{site}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_site_sae/{model}/L{layer}.{site}/seed{seed}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("train_sae"),
    params:
        sae=BASIS_SAE,
        seed=lambda wc: int(wc.seed),
        capture=dense_capture_settings,
        device=config["device"],
    script:
        "../../scripts/train_sae.py"


rule measure_feature_basis:
    input:
        model=fill(paths.MODEL, cond="dense"),
        sae=fill(paths.SITE_SAE_FILE, name="sae.safetensors", seed=FEATURE_SEED),
        sae_cfg=fill(paths.SITE_SAE_FILE, name="cfg.json", seed=FEATURE_SEED),
        activations=paths.SITE_ACTIVATIONS,
    output:
        paths.FEATURE_BASIS,
    log:
        "results/logs/measure_feature_basis/{model}/L{layer}.{site}.log",
    benchmark:
        "results/benchmarks/measure_feature_basis/{model}/L{layer}.{site}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        capture=dense_capture_settings,
        sae=BASIS_SAE,
        dtype=lambda wc: model_spec(wc)["dtype"],
        device=config["device"],
    script:
        "../../scripts/measure_feature_basis.py"


rule measure_distortion:
    input:
        dense=fill(paths.MODEL, cond="dense"),
        pruned=paths.MODEL,
        bases=lambda wc: feature_site_files(config, wc.model, paths.FEATURE_BASIS),
        caches=lambda wc: feature_site_files(config, wc.model, paths.SITE_ACTIVATIONS),
    output:
        paths.DISTORTION,
    log:
        "results/logs/measure_distortion/{model}/{cond}.log",
    benchmark:
        "results/benchmarks/measure_distortion/{model}/{cond}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        dtype=lambda wc: model_spec(wc)["dtype"],
        capture=dense_capture_settings,
        upstream=reads(model=job_checkpoint, bases=feature_bases),
        device=config["device"],
    script:
        "../../scripts/measure_distortion.py"


rule feature_pruning_table:
    input:
        distortions=[path for _, path in DISTORTIONS],
        perplexity=fill(paths.TABLE, name="table1"),
        activation_survival=fill(paths.TABLE, name="activation_survival"),
        decoder_survival=fill(paths.TABLE, name="survival"),
        activation_quintiles=fill(paths.TABLE, name="table3_activation"),
    output:
        table=lm_report(
            fill(paths.TABLE, name="feature_pruning"), "Feature-aware pruning"
        ),
        ranks=lm_report(
            fill(paths.TABLE, name="distortion_ranks"), "Feature-aware pruning"
        ),
        figure=lm_report(
            fill(paths.FIGURE, name="feature_distortion"), "Feature-aware pruning"
        ),
    log:
        "results/logs/feature_pruning_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        conditions=[list(key) for key, _ in DISTORTIONS],
        sae_label=TRAINED_SAE,
        activation_tau=config["analysis"]["primary_correlation_tau"],
        decoder_tau=config["analysis"]["primary_tau"],
    script:
        "../../scripts/feature_pruning_table.py"
