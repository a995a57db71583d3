# Study LM, data stages: corpus -> (tokenizer, tiny LM | hub model) -> pruned
# checkpoints -> perplexity -> fp32 activation cache -> TopK SAEs.


rule prepare_corpus:
    output:
        train=fill(paths.CORPUS_SPLIT, split="train"),
        calib=fill(paths.CORPUS_SPLIT, split="calib"),
        eval=fill(paths.CORPUS_SPLIT, split="eval"),
        manifest=paths.CORPUS_MANIFEST,
    log:
        "results/logs/prepare_corpus/{corpus}.log",
    benchmark:
        "results/benchmarks/prepare_corpus/{corpus}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    params:
        corpus=lambda wc: canonical(config["corpora"][wc.corpus]),
    script:
        "../../scripts/prepare_corpus.py"


rule train_tokenizer:
    input:
        train=model_corpus_split("train"),
    output:
        directory(paths.TOKENIZER),
    log:
        "results/logs/train_tokenizer/{model}.log",
    wildcard_constraints:
        model="|".join(LOCAL_MODELS),
    conda:
        "../../envs/prunescope.yaml"
    params:
        tokenizer=lambda wc: canonical(model_spec(wc)["tokenizer"]),
        upstream=reads(corpus=model_corpus),
    script:
        "../../scripts/train_tokenizer.py"


rule train_local_model:
    input:
        tokenizer=paths.TOKENIZER,
        train=model_corpus_split("train"),
        eval=model_corpus_split("eval"),
    output:
        directory(fill(paths.MODEL, cond="dense")),
    log:
        "results/logs/train_local_model/{model}.log",
    benchmark:
        "results/benchmarks/train_local_model/{model}.tsv"
    wildcard_constraints:
        model="|".join(LOCAL_MODELS),
    conda:
        "../../envs/prunescope.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("train_local_model"),
    params:
        architecture=lambda wc: canonical(model_spec(wc)["architecture"]),
        training=lambda wc: canonical(model_spec(wc)["training"]),
        upstream=reads(corpus=model_corpus, tokenizer=tokenizer_settings),
        device=config["device"],
    script:
        "../../scripts/train_local_model.py"


rule save_hub_model:
    output:
        directory(fill(paths.MODEL, cond="dense")),
    log:
        "results/logs/save_hub_model/{model}.log",
    benchmark:
        "results/benchmarks/save_hub_model/{model}.tsv"
    wildcard_constraints:
        model="|".join(HUB_MODELS),
    # first among the jobs ready to run: a model that cannot be downloaded stops the
    # run before hours of other work
    priority: 50
    conda:
        "../../envs/prunescope.yaml"
    params:
        name=lambda wc: model_spec(wc)["name"],
        revision=lambda wc: model_spec(wc).get("revision"),
        dtype=lambda wc: model_spec(wc)["dtype"],
    script:
        "../../scripts/save_hub_model.py"


rule prune_model:
    input:
        model=fill(paths.MODEL, cond="dense"),
        calib=model_corpus_split("calib"),
        # the feature methods' feature bases (none for the others)
        bases=lambda wc: pruning_bases(config, wc.model, wc.method),
    output:
        intermediate(directory(fill(paths.MODEL, cond="{method}-{sparsity}"))),
    log:
        "results/logs/prune_model/{model}/{method}-{sparsity}.log",
    benchmark:
        "results/benchmarks/prune_model/{model}/{method}-{sparsity}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("prune_model"),
    params:
        sparsity=lambda wc: float(wc.sparsity),
        options=lambda wc: canonical(pruning_options(config, wc.model, wc.method)),
        dtype=lambda wc: model_spec(wc)["dtype"],
        upstream=reads(corpus=model_corpus, model=dense_checkpoint),
        device=config["device"],
    script:
        "../../scripts/prune_model.py"


rule evaluate_perplexity:
    input:
        model=paths.MODEL,
        text=perplexity_corpus_file,
    output:
        paths.PERPLEXITY,
    log:
        "results/logs/evaluate_perplexity/{model}/{cond}.log",
    benchmark:
        "results/benchmarks/evaluate_perplexity/{model}/{cond}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("evaluate_perplexity"),
    params:
        perplexity=canonical(config["perplexity"]),
        dtype=lambda wc: model_spec(wc)["dtype"],
        upstream=reads(model=job_checkpoint, text=perplexity_text),
        device=config["device"],
    script:
        "../../scripts/evaluate_perplexity.py"


rule capture_activations:
    input:
        model=paths.MODEL,
        train=model_corpus_split("train"),
        eval=model_corpus_split("eval"),
    output:
        intermediate(paths.ACTIVATIONS),
    log:
        "results/logs/capture_activations/{model}/{cond}/L{layer}.log",
    benchmark:
        "results/benchmarks/capture_activations/{model}/{cond}/L{layer}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("capture_activations"),
    params:
        settings=capture_settings,
        device=config["device"],
    script:
        "../../scripts/capture_activations.py"


rule train_sae:
    input:
        paths.ACTIVATIONS,
    output:
        weights=fill(paths.SAE_FILE, name="sae.safetensors"),
        cfg=fill(paths.SAE_FILE, name="cfg.json"),
        metrics=fill(paths.SAE_FILE, name="metrics.json"),
    log:
        "results/logs/train_sae/{model}/{cond}/L{layer}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_sae/{model}/{cond}/L{layer}/seed{seed}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("train_sae"),
    params:
        sae=canonical({k: v for k, v in config["sae"].items() if k != "seeds"}),
        seed=lambda wc: int(wc.seed),
        capture=capture_settings,
        device=config["device"],
    script:
        "../../scripts/train_sae.py"


rule export_saelens:
    input:
        weights=fill(paths.SAE_FILE, name="sae.safetensors"),
        cfg=fill(paths.SAE_FILE, name="cfg.json"),
    output:
        directory(paths.SAELENS),
    log:
        "results/logs/export_saelens/{model}/{cond}/L{layer}/seed{seed}.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        export=lambda wc: saelens_export_settings(config, wc.model, wc.layer),
    script:
        "../../scripts/export_saelens.py"


rule import_pretrained_sae:
    input:
        model=fill(paths.MODEL, cond="dense"),
        sae=lambda wc: pretrained_sae_input(config, wc.model, wc.layer),
    output:
        directory(paths.PRETRAINED_SAE),
    log:
        "results/logs/import_pretrained_sae/{model}/L{layer}.log",
    # as soon as the model is there: an SAE that cannot be downloaded or read stops the
    # run before the hours of capture and training that precede its first use
    priority: 50
    conda:
        "../../envs/prunescope.yaml"
    params:
        source=pretrained_sae("source"),
        label=pretrained_sae("label"),
        key=lambda wc: f"models.{wc.model}.pretrained_saes.{wc.layer}",
    script:
        "../../scripts/import_pretrained_sae.py"
