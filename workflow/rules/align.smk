# Study ALIGN: dataset -> dense net (learnable C0) -> W1 Hessian and MIP oracle ->
# pruned variants (MP, OBD, OBS, MIP, FLO, mask-only) -> fine-tuned variants ->
# tables and figures of the feature-space alignment paper (align_tables.smk).
# Beyond the paper: feature bases estimated from x' = C0·x alone (SAE, ICA) -> the same
# MIP with such a basis in place of C0 -> the variants mip_sae, flo_sae, mip_ica, flo_ica.


rule make_align_dataset:
    output:
        paths.ALIGN_DATASET,
    log:
        "results/logs/make_align_dataset/{task}/trial{trial}.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        options=lambda wc: canonical(dataset_options(config, wc.task, wc.trial)),
    script:
        "../../scripts/make_align_dataset.py"


rule train_align_net:
    input:
        paths.ALIGN_DATASET,
    output:
        net=fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
        history=fill(paths.ALIGN_NET_FILE, name="training.csv"),
    log:
        "results/logs/train_align_net/{task}/trial{trial}.log",
    benchmark:
        "results/benchmarks/train_align_net/{task}/trial{trial}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    params:
        training=canonical(ALIGN["training"]),
        seed=lambda wc: int(wc.trial),
        upstream=reads(data=dataset_of),
    script:
        "../../scripts/train_align_net.py"


rule estimate_align_hessian:
    input:
        net=fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
        data=paths.ALIGN_DATASET,
    output:
        hessian=intermediate(fill(paths.ALIGN_NET_FILE, name="hessian.npy")),
        inverse=intermediate(fill(paths.ALIGN_NET_FILE, name="hessian_inverse.npy")),
    log:
        "results/logs/estimate_align_hessian/{task}/trial{trial}.log",
    benchmark:
        "results/benchmarks/estimate_align_hessian/{task}/trial{trial}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    resources:
        gpu=1,
        mem_mb=estimated_mem_mb("estimate_align_hessian"),
    params:
        fraction=lambda wc: hessian_fraction(config, wc.task),
        seed=lambda wc: int(wc.trial),
        damping=ALIGN["hessian"]["damping"],
        device=config["device"],
        upstream=reads(net=net_of),
    script:
        "../../scripts/estimate_align_hessian.py"


rule estimate_align_basis:
    input:
        net=fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
        data=paths.ALIGN_DATASET,
    output:
        basis=paths.ALIGN_BASIS,
        recovery=paths.BASIS_RECOVERY,
    log:
        "results/logs/estimate_align_basis/{task}/trial{trial}/{estimator}.log",
    benchmark:
        "results/benchmarks/estimate_align_basis/{task}/trial{trial}/{estimator}.tsv"
    wildcard_constraints:
        estimator="|".join(ESTIMATORS),
    conda:
        "../../envs/prunescope.yaml"
    params:
        estimator=lambda wc: wc.estimator,
        settings=lambda wc: canonical(ALIGN["basis"][wc.estimator]),
        seed=lambda wc: int(wc.trial),
        upstream=reads(net=net_of),
    script:
        "../../scripts/estimate_align_basis.py"


rule solve_align_mip:
    input:
        fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
    output:
        paths.MIP,
    log:
        "results/logs/solve_align_mip/{task}/{structure}/trial{trial}/s{sparsity}.log",
    benchmark:
        "results/benchmarks/solve_align_mip/{task}/{structure}/trial{trial}/s{sparsity}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    threads: ALIGN["mip"]["threads"]
    resources:
        mem_mb=estimated_mem_mb("solve_align_mip"),
    params:
        sparsity=lambda wc: float(wc.sparsity),
        structure=lambda wc: wc.structure,
        mip=canonical(ALIGN["mip"]),
        upstream=reads(net=net_of),
    script:
        "../../scripts/solve_align_mip.py"


rule solve_align_basis_mip:
    input:
        net=fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
        basis=paths.ALIGN_BASIS,
    output:
        paths.BASIS_MIP,
    log:
        "results/logs/solve_align_basis_mip/{task}/{structure}/trial{trial}/{estimator}/s{sparsity}.log",
    benchmark:
        "results/benchmarks/solve_align_basis_mip/{task}/{structure}/trial{trial}/{estimator}/s{sparsity}.tsv"
    wildcard_constraints:
        estimator="|".join(ESTIMATORS),
    conda:
        "../../envs/prunescope.yaml"
    threads: ALIGN["mip"]["threads"]
    resources:
        mem_mb=estimated_mem_mb("solve_align_mip"),
    params:
        sparsity=lambda wc: float(wc.sparsity),
        structure=lambda wc: wc.structure,
        estimator=lambda wc: wc.estimator,
        mip=canonical(ALIGN["mip"]),
        upstream=reads(basis=basis_of),
    script:
        "../../scripts/solve_align_basis_mip.py"


rule prune_align_nets:
    input:
        net=fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
        data=paths.ALIGN_DATASET,
        hessian=fill(paths.ALIGN_NET_FILE, name="hessian.npy"),
        hessian_inverse=fill(paths.ALIGN_NET_FILE, name="hessian_inverse.npy"),
        mip=align_mip_solutions,
        basis_mip=align_basis_mip_solutions,
    output:
        nets=fill(paths.PRUNED_FILE, name="pruned.safetensors"),
        metrics=fill(paths.PRUNED_FILE, name="pruned.csv"),
    log:
        "results/logs/prune_align_nets/{task}/{structure}/trial{trial}.log",
    benchmark:
        "results/benchmarks/prune_align_nets/{task}/{structure}/trial{trial}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    resources:
        mem_mb=estimated_mem_mb("prune_align_nets"),
    params:
        variants=lambda wc: variants(config, wc.structure),
        structure=lambda wc: wc.structure,
        upstream=reads(hessian=hessian_of, mip=mip_solutions_of),
    script:
        "../../scripts/prune_align_nets.py"


rule finetune_align_nets:
    input:
        nets=fill(paths.PRUNED_FILE, name="pruned.safetensors"),
        pruned=fill(paths.PRUNED_FILE, name="pruned.csv"),
        data=paths.ALIGN_DATASET,
        dense=fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
    output:
        nets=fill(paths.PRUNED_FILE, name="finetuned.safetensors"),
        metrics=fill(paths.PRUNED_FILE, name="finetuned.csv"),
    log:
        "results/logs/finetune_align_nets/{task}/{structure}/trial{trial}.log",
    benchmark:
        "results/benchmarks/finetune_align_nets/{task}/{structure}/trial{trial}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    resources:
        mem_mb=estimated_mem_mb("finetune_align_nets"),
    params:
        finetuning=canonical(ALIGN["finetuning"]),
        seed=lambda wc: int(wc.trial),
        upstream=reads(pruned=pruned_of),
    script:
        "../../scripts/finetune_align_nets.py"


rule sweep_align_magnitude:
    input:
        net=fill(paths.ALIGN_NET_FILE, name="dense.safetensors"),
        data=paths.ALIGN_DATASET,
    output:
        paths.SWEEP,
    log:
        "results/logs/sweep_align_magnitude/{task}/trial{trial}.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        sparsities=ALIGN["magnitude_sweep"],
        upstream=reads(net=net_of),
    script:
        "../../scripts/sweep_align_magnitude.py"
