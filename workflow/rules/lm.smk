# Study LM, data stages: corpus -> (tokenizer, tiny LM | hub model) -> pruned
# checkpoints -> perplexity -> fp32 activation cache -> TopK SAEs.


rule prepare_corpus:
    output:
        train="results/corpus/{corpus}/train.jsonl",
        calib="results/corpus/{corpus}/calib.jsonl",
        eval="results/corpus/{corpus}/eval.jsonl",
        manifest="results/corpus/{corpus}/manifest.json",
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
        directory("results/tokenizers/{model}"),
    log:
        "results/logs/train_tokenizer/{model}.log",
    wildcard_constraints:
        model="|".join(LOCAL_MODELS),
    conda:
        "../../envs/prunescope.yaml"
    params:
        tokenizer=lambda wc: canonical(model_spec(wc)["tokenizer"]),
        upstream=upstream("train_tokenizer"),
    script:
        "../../scripts/train_tokenizer.py"


rule train_local_model:
    input:
        tokenizer="results/tokenizers/{model}",
        train=model_corpus_split("train"),
        eval=model_corpus_split("eval"),
    output:
        directory("results/models/{model}/dense"),
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
        upstream=upstream("train_local_model"),
        device=config["device"],
    script:
        "../../scripts/train_local_model.py"


rule save_hub_model:
    output:
        directory("results/models/{model}/dense"),
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
        model="results/models/{model}/dense",
        calib=model_corpus_split("calib"),
    output:
        intermediate(directory("results/models/{model}/{method}-{sparsity}")),
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
        upstream=upstream("prune_model"),
        device=config["device"],
    script:
        "../../scripts/prune_model.py"


rule evaluate_perplexity:
    input:
        model="results/models/{model}/{cond}",
        text=perplexity_corpus_file,
    output:
        "results/perplexity/{model}/{cond}.json",
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
        upstream=upstream("evaluate_perplexity"),
        device=config["device"],
    script:
        "../../scripts/evaluate_perplexity.py"


rule capture_activations:
    input:
        model="results/models/{model}/{cond}",
        train=model_corpus_split("train"),
        eval=model_corpus_split("eval"),
    output:
        intermediate("results/activations/{model}/{cond}/L{layer}.h5"),
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
        "results/activations/{model}/{cond}/L{layer}.h5",
    output:
        weights="results/sae/{model}/{cond}/L{layer}/seed{seed}/sae.safetensors",
        cfg="results/sae/{model}/{cond}/L{layer}/seed{seed}/cfg.json",
        metrics="results/sae/{model}/{cond}/L{layer}/seed{seed}/metrics.json",
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
        weights="results/sae/{model}/{cond}/L{layer}/seed{seed}/sae.safetensors",
        cfg="results/sae/{model}/{cond}/L{layer}/seed{seed}/cfg.json",
    output:
        directory("results/saelens/{model}/{cond}/L{layer}/seed{seed}"),
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
        model=lambda wc: model_dir(wc.model, "dense"),
        sae=lambda wc: pretrained_sae_input(config, wc.model, wc.layer),
    output:
        directory("results/pretrained_sae/{model}/L{layer}"),
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
