# Study LM, causal relevance (RQ5): ablate robust and fragile features in the dense and
# the pruned model and measure the KL of the next-token distribution (Table 4).


rule ablate_features:
    input:
        ranking=ablation_ranking_file,
        sae=ablated_sae("sae.safetensors"),
        sae_cfg=ablated_sae("cfg.json"),
        sae_metrics=ablated_sae("metrics.json"),
        model=ablated_model,
        prompts=model_corpus_split("eval"),
    output:
        paths.ABLATION,
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
        upstream=reads(model=job_checkpoint, prompts=model_corpus),
        device=config["device"],
    script:
        "../../scripts/ablate_features.py"


rule ablation_table:
    input:
        all_ablation_results(config),
    output:
        table=lm_report(fill(paths.TABLE, name="table4"), "RQ5 causal relevance"),
        figure=lm_report(fill(paths.FIGURE, name="fig6"), "RQ5 causal relevance"),
    log:
        "results/logs/ablation_table.log",
    conda:
        "../../envs/prunescope.yaml"
    script:
        "../../scripts/ablation_table.py"
