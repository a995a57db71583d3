# The feature browser: per model and cached layer, one self-contained page of feature
# cards, dense beside pruned, from what the activation-level survival kept (each feature's
# strongest activations and their contexts) and the decoder matches.


rule feature_pages:
    input:
        unpack(feature_page_inputs),
        model=fill(paths.MODEL, cond="dense"),
        eval=model_corpus_split("eval"),
    output:
        report(
            paths.FEATURE_PAGES,
            caption="../report/feature_pages.rst",
            category="Study LM",
            subcategory="Feature browser",
        ),
    log:
        "results/logs/feature_pages/{model}/L{layer}.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        files=feature_page_conditions,
        capture=dense_capture_settings,
        tau=config["analysis"]["primary_correlation_tau"],
        per_quintile=config["browser"]["per_quintile"],
        seed=config["browser"]["seed"],
    script:
        "../../scripts/feature_pages.py"


rule findings:
    input:
        unpack(findings_files),
    output:
        report(
            paths.FINDINGS,
            caption="../report/findings.rst",
            category="Findings",
        ),
    log:
        "results/logs/findings.log",
    conda:
        "../../envs/prunescope.yaml"
    params:
        tau=config["analysis"]["primary_tau"],
        correlation_tau=config["analysis"]["primary_correlation_tau"],
        reference_sae=TRAINED_SAE,
    script:
        "../../scripts/findings.py"
