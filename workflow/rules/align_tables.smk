# Study ALIGN, what the paper shows: accuracy before and after fine-tuning, the MIP's
# solves, the training codes, the magnitude sweep, and the figures and weight pictures;
# and beyond it, MIP and FLO with estimated feature bases beside the oracle's.


rule align_accuracy_table:
    input:
        pruned=all_align_results("pruned.csv"),
        finetuned=all_align_results("finetuned.csv"),
    output:
        table=fill(paths.ALIGN_TABLE, name="accuracy"),
        summary=align_report(
            fill(paths.ALIGN_TABLE, name="accuracy_summary"),
            "align_accuracy",
            "Tables",
        ),
    log:
        "results/logs/align_accuracy_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=reads(variants=every_variant),
    script:
        "../../scripts/align_accuracy_table.py"


rule align_basis_table:
    input:
        accuracy=fill(paths.ALIGN_TABLE, name="accuracy"),
        recoveries=all_basis_recoveries,
    output:
        table=align_report(
            fill(paths.ALIGN_TABLE, name="estimated_basis"), "align_basis", "Tables"
        ),
        recovery=align_report(
            fill(paths.ALIGN_TABLE, name="basis_recovery"),
            "align_basis_recovery",
            "Tables",
        ),
    log:
        "results/logs/align_basis_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=reads(variants=every_variant, bases=every_basis),
    script:
        "../../scripts/align_basis_table.py"


rule align_mip_table:
    input:
        all_align_mip,
    output:
        table=align_report(
            fill(paths.ALIGN_TABLE, name="mip_solves"), "align_mip", "Tables"
        ),
        seconds=paths.MIP_SECONDS,
    log:
        "results/logs/align_mip_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=reads(mip=every_mip_solution),
    script:
        "../../scripts/align_mip_table.py"


rule align_training_table:
    input:
        all_align_trials(fill(paths.ALIGN_NET_FILE, name="training.csv")),
    output:
        align_report(
            fill(paths.ALIGN_TABLE, name="training_codes"), "align_training", "Tables"
        ),
    log:
        "results/logs/align_training_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=reads(nets=every_net),
    script:
        "../../scripts/align_training_table.py"


rule align_sweep_table:
    input:
        all_align_trials(paths.SWEEP),
    output:
        align_report(
            fill(paths.ALIGN_TABLE, name="magnitude_sweep"), "align_sweep", "Tables"
        ),
    log:
        "results/logs/align_sweep_table.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        upstream=reads(sweeps=every_sweep),
    script:
        "../../scripts/align_sweep_table.py"


rule plot_align_figure:
    input:
        accuracy=fill(paths.ALIGN_TABLE, name="accuracy"),
        training=fill(paths.ALIGN_TABLE, name="training_codes"),
        sweep=fill(paths.ALIGN_TABLE, name="magnitude_sweep"),
    output:
        align_report(paths.ALIGN_FIGURE, "align_figure", "Figures"),
    log:
        "results/logs/plot_align_figure/{figure}.log",
    wildcard_constraints:
        figure="|".join(ALIGN_FIGURES),
    conda:
        "../../envs/prunescope.yaml"
    params:
        figure=lambda wc: wc.figure,
        upstream=reads(accuracy=every_variant, training=every_net, sweep=every_sweep),
    script:
        "../../scripts/plot_align_figure.py"


rule plot_align_picture:
    input:
        net=fill(paths.ALIGN_NET_FILE, name="dense.safetensors", trial=HEATMAP_TRIAL),
        data=fill(paths.ALIGN_DATASET, trial=HEATMAP_TRIAL),
        pruned=heatmap_variants("pruned.safetensors"),
        variants=heatmap_variants("pruned.csv"),
    output:
        align_report(paths.ALIGN_PICTURE, "align_picture", "Weight pictures"),
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
        upstream=reads(pruned=heatmap_pruned_of),
    script:
        "../../scripts/plot_align_picture.py"
