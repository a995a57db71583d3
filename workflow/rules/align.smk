# Study ALIGN: dataset -> dense net (learnable C0) -> W1 Hessian and MIP oracle ->
# pruned variants (MP, OBD, OBS, MIP, FLO, mask-only) -> fine-tuned variants ->
# tables and figures of the feature-space alignment paper.


rule make_align_dataset:
    output:
        "results/align/data/{task}/trial{trial}.npz",
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
        "results/align/data/{task}/trial{trial}.npz",
    output:
        net="results/align/nets/{task}/trial{trial}/dense.safetensors",
        history="results/align/nets/{task}/trial{trial}/training.csv",
    log:
        "results/logs/train_align_net/{task}/trial{trial}.log",
    benchmark:
        "results/benchmarks/train_align_net/{task}/trial{trial}.tsv"
    conda:
        "../../envs/prunescope.yaml"
    params:
        training=canonical(ALIGN["training"]),
        seed=lambda wc: int(wc.trial),
        upstream=align_upstream("train_align_net"),
    script:
        "../../scripts/train_align_net.py"


rule estimate_align_hessian:
    input:
        net="results/align/nets/{task}/trial{trial}/dense.safetensors",
        data="results/align/data/{task}/trial{trial}.npz",
    output:
        hessian=intermediate("results/align/nets/{task}/trial{trial}/hessian.npy"),
        inverse=intermediate(
            "results/align/nets/{task}/trial{trial}/hessian_inverse.npy"
        ),
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
        upstream=align_upstream("estimate_align_hessian"),
    script:
        "../../scripts/estimate_align_hessian.py"


rule solve_align_mip:
    input:
        "results/align/nets/{task}/trial{trial}/dense.safetensors",
    output:
        "results/align/mip/{task}/{structure}/trial{trial}/s{sparsity}.npz",
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
        upstream=align_upstream("solve_align_mip"),
    script:
        "../../scripts/solve_align_mip.py"


rule prune_align_nets:
    input:
        net="results/align/nets/{task}/trial{trial}/dense.safetensors",
        data="results/align/data/{task}/trial{trial}.npz",
        hessian="results/align/nets/{task}/trial{trial}/hessian.npy",
        hessian_inverse="results/align/nets/{task}/trial{trial}/hessian_inverse.npy",
        mip=align_mip_solutions,
    output:
        nets="results/align/pruned/{task}/{structure}/trial{trial}/pruned.safetensors",
        metrics="results/align/pruned/{task}/{structure}/trial{trial}/pruned.csv",
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
        upstream=align_upstream("prune_align_nets"),
    script:
        "../../scripts/prune_align_nets.py"


rule finetune_align_nets:
    input:
        nets="results/align/pruned/{task}/{structure}/trial{trial}/pruned.safetensors",
        pruned="results/align/pruned/{task}/{structure}/trial{trial}/pruned.csv",
        data="results/align/data/{task}/trial{trial}.npz",
        dense="results/align/nets/{task}/trial{trial}/dense.safetensors",
    output:
        nets="results/align/pruned/{task}/{structure}/trial{trial}/finetuned.safetensors",
        metrics="results/align/pruned/{task}/{structure}/trial{trial}/finetuned.csv",
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
        upstream=align_upstream("finetune_align_nets"),
    script:
        "../../scripts/finetune_align_nets.py"


rule sweep_align_magnitude:
    input:
        net="results/align/nets/{task}/trial{trial}/dense.safetensors",
        data="results/align/data/{task}/trial{trial}.npz",
    output:
        "results/align/sweep/{task}/trial{trial}.csv",
    log:
        "results/logs/sweep_align_magnitude/{task}/trial{trial}.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        sparsities=ALIGN["magnitude_sweep"],
        upstream=align_upstream("sweep_align_magnitude"),
    script:
        "../../scripts/sweep_align_magnitude.py"


rule align_accuracy_table:
    input:
        pruned=all_align_results("pruned.csv"),
        finetuned=all_align_results("finetuned.csv"),
    output:
        table="results/align/tables/accuracy.csv",
        summary=report(
            "results/align/tables/accuracy_summary.csv",
            caption="../report/align_accuracy.rst",
            category="Study ALIGN",
            subcategory="Tables",
        ),
    log:
        "results/logs/align_accuracy_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=align_upstream("align_accuracy_table"),
    script:
        "../../scripts/align_accuracy_table.py"


rule align_mip_table:
    input:
        all_align_mip,
    output:
        table=report(
            "results/align/tables/mip_solves.csv",
            caption="../report/align_mip.rst",
            category="Study ALIGN",
            subcategory="Tables",
        ),
        # wall-clock times vary from machine to machine: kept out of the tables
        seconds="results/benchmarks/align_mip_seconds.csv",
    log:
        "results/logs/align_mip_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=align_upstream("align_mip_table"),
    script:
        "../../scripts/align_mip_table.py"


rule align_training_table:
    input:
        all_align_trials("results/align/nets/{task}/trial{trial}/training.csv"),
    output:
        report(
            "results/align/tables/training_codes.csv",
            caption="../report/align_training.rst",
            category="Study ALIGN",
            subcategory="Tables",
        ),
    log:
        "results/logs/align_training_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=align_upstream("align_training_table"),
    script:
        "../../scripts/align_training_table.py"


rule align_sweep_table:
    input:
        all_align_trials("results/align/sweep/{task}/trial{trial}.csv"),
    output:
        report(
            "results/align/tables/magnitude_sweep.csv",
            caption="../report/align_sweep.rst",
            category="Study ALIGN",
            subcategory="Tables",
        ),
    log:
        "results/logs/align_sweep_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=align_upstream("align_sweep_table"),
    script:
        "../../scripts/align_sweep_table.py"


rule plot_align_figure:
    input:
        accuracy="results/align/tables/accuracy.csv",
        training="results/align/tables/training_codes.csv",
        sweep="results/align/tables/magnitude_sweep.csv",
    output:
        report(
            "results/align/figures/{figure}.png",
            caption="../report/align_figure.rst",
            category="Study ALIGN",
            subcategory="Figures",
        ),
    log:
        "results/logs/plot_align_figure/{figure}.log",
    wildcard_constraints:
        figure="|".join(ALIGN_FIGURES),
    conda:
        "../../envs/prunescope.yaml"
    params:
        figure=lambda wc: wc.figure,
        upstream=align_upstream("plot_align_figure"),
    script:
        "../../scripts/plot_align_figure.py"


rule plot_align_picture:
    input:
        net=lambda wc: f"{net_dir(wc.task, ALIGN['heatmap_trial'])}/dense.safetensors",
        data=lambda wc: dataset_path(wc.task, ALIGN["heatmap_trial"]),
        pruned=lambda wc: f"{pruned_dir(wc.task, 'unstructured', ALIGN['heatmap_trial'])}/pruned.safetensors",
        variants=lambda wc: f"{pruned_dir(wc.task, 'unstructured', ALIGN['heatmap_trial'])}/pruned.csv",
    output:
        report(
            "results/align/figures/{task}/{picture}.png",
            caption="../report/align_picture.rst",
            category="Study ALIGN",
            subcategory="Weight pictures",
        ),
    log:
        "results/logs/plot_align_picture/{task}/{picture}.log",
    wildcard_constraints:
        picture="fig1|fig3|figA2|figA4|figA5",
    conda:
        "../../envs/prunescope.yaml"
    params:
        picture=lambda wc: wc.picture,
        sweep=ALIGN["magnitude_sweep"],
        sparsity=ALIGN["heatmap_sparsity"],
        upstream=align_upstream("plot_align_picture"),
    script:
        "../../scripts/plot_align_picture.py"
