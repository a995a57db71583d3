"""The experiment grid as plain data: what to build and which files each job reads.

The Snakemake rule files ask this module for their target lists and the inputs that
depend on the config (every seed pair of a condition, the SAE trained elsewhere for a
layer, the file that ranks the features to ablate); it knows nothing of Snakemake, so the
grid logic is unit-tested like the rest of the library. Paths come from
:mod:`prunescope.paths`, names from :mod:`prunescope.conditions`.
"""

from __future__ import annotations

from prunescope.align.plan import align_block, align_pictures
from prunescope.architectures import SITES
from prunescope.conditions import (
    FEATURE_AWARE,
    condition_name,
    conditions,
    model_grid,
    model_layers,
    parse_method,
    pruned_conditions,
    seed_pairs,
)
from prunescope.lineage import feature_blocks, feature_enabled
from prunescope.paths import (
    ABLATION,
    ALIGN_PICTURE,
    ALIGN_TABLE,
    DISTORTION,
    FEATURE_BASIS,
    FEATURE_PAGES,
    FIGURE,
    FINDINGS,
    PERPLEXITY,
    PRETRAINED_SURVIVAL,
    PRETRAINED_TOP_ACTIVATIONS,
    PRETRAINED_TRANSFER,
    REVERSE_SURVIVAL,
    REVERSE_TOP_ACTIVATIONS,
    SAE_FILE,
    SAELENS,
    SURVIVAL,
    TABLE,
    TOP_ACTIVATIONS,
    TRANSFER,
    fill,
    match_path,
)

# --- the data stages ------------------------------------------------------------------------


def saelens_export_settings(config: dict, model: str, layer: int | str) -> dict:
    """What SAELens needs to place an exported SAE: the TransformerLens name of the
    residual stream after decoder block ``layer`` and the model's name (its hub id, or the
    name of a model trained here)."""
    spec = config["models"][model]
    return {
        "hook_name": f"blocks.{int(layer)}.hook_resid_post",
        "model_name": spec.get("name") if spec["source"] == "hf" else model,
    }


def saelens_exports(config: dict) -> list[str]:
    """The SAELens copy of every SAE of the grid, beside (not inside) its SAE folder, which
    training must find holding nothing but its own files."""
    return [
        fill(SAELENS, model=model, cond=cond, layer=layer, seed=seed)
        for model, spec in config["models"].items()
        for cond in conditions(config, model)
        for layer in spec["layers"]
        for seed in config["sae"]["seeds"]
    ]


def data_stage_targets(config: dict) -> list[str]:
    """Perplexity of every condition and every SAE seed of every cached layer."""
    targets = []
    for model, spec in config["models"].items():
        for cond in conditions(config, model):
            targets.append(fill(PERPLEXITY, model=model, cond=cond))
            for layer in spec["layers"]:
                for seed in config["sae"]["seeds"]:
                    sae = {"model": model, "cond": cond, "layer": layer, "seed": seed}
                    targets.append(fill(SAE_FILE, name="metrics.json", **sae))
    return targets


# --- analyses (RQ1-RQ5) ---------------------------------------------------------------------


def top_activation_settings(config: dict) -> dict:
    """What the activation-level survival keeps for the feature browser (``browser``)."""
    browser = config["browser"]
    return {
        "top_n": browser["top_n"],
        "n_contexts": browser["contexts"],
        "before": browser["before"],
        "after": browser["after"],
    }


def independent_seed(config: dict) -> int:
    """The first SAE seed that is not the reference seed: an SAE whose initial dictionary
    differs from the dense reference SAE's, for the reverse view and its floor."""
    ref = config["analysis"]["reference_seed"]
    return next(s for s in config["sae"]["seeds"] if s != ref)


def ablation_ranking(config: dict, model: str, layer: int, cond: str, side: str) -> str:
    """The file that ranks the features RQ5 ablates (``analysis.ablation.selection``):
    the reference-seed match, or the activation-level survival of that side's SAE."""
    ref = config["analysis"]["reference_seed"]
    if config["analysis"]["ablation"]["selection"] == "decoder":
        return match_path(model, layer, "dense", ref, cond, ref)
    if side == "dense":
        return fill(SURVIVAL, model=model, layer=layer, cond=cond)
    return fill(REVERSE_SURVIVAL, model=model, layer=layer, cond=cond, seed=ref)


# --- SAEs trained elsewhere (models.<m>.pretrained_saes) ----------------------------------------

HUB_SAE_KEYS = ("repo", "path", "revision")


def pretrained_saes(config: dict, model: str) -> dict[int, dict]:
    """Layer -> ``{"source": ..., "label": ...}`` for every SAE trained elsewhere that the
    config gives ``model``: ``source`` is a local path or ``{repo, path[, revision]}`` (what
    ``prunescope.pretrained.resolve_sae_source`` reads), ``label`` its name in the tables."""
    entries = config["models"][model].get("pretrained_saes") or {}
    return {
        int(layer): {"source": pretrained_source(entry), "label": pretrained_label(entry)}
        for layer, entry in entries.items()
    }


def pretrained_source(entry) -> str | dict:
    """A local path (a bare string, or ``path`` without ``repo``) or a hub coordinate."""
    if isinstance(entry, str):
        return entry
    if entry.get("repo"):
        return {key: entry[key] for key in HUB_SAE_KEYS if entry.get(key) is not None}
    return entry["path"]


def pretrained_label(entry) -> str:
    """The SAE's name in every table: ``label`` when given, else its repo and path (hub)
    or its path (local), which name it exactly."""
    if isinstance(entry, dict) and entry.get("label"):
        return entry["label"]
    source = pretrained_source(entry)
    if isinstance(source, str):
        return source
    at = f"@{source['revision']}" if source.get("revision") else ""
    path = source["path"].strip("/")
    return f"{source['repo']}{at}/{path}" if path else f"{source['repo']}{at}"


def trained_sae_label(config: dict) -> str:
    """The name, in the tables beside a pretrained SAE, of the dense SAE trained here."""
    return f"trained here: dense seed {config['analysis']['reference_seed']}"


def pretrained_layers(config: dict) -> list[tuple[str, int]]:
    """Every (model, layer) with an SAE trained elsewhere."""
    return [
        (model, layer) for model in config["models"] for layer in pretrained_saes(config, model)
    ]


def pretrained_sae_input(config: dict, model: str, layer: int | str) -> list[str]:
    """What the import job reads from this machine: a local SAE's path (so that one a rule
    writes, such as an SAELens export under results/, is built first); nothing for a hub
    SAE, whose coordinates reach the job as a parameter."""
    source = pretrained_saes(config, model)[int(layer)]["source"]
    return [source] if isinstance(source, str) else []


def stability_matches(config: dict, model: str, layer: int, cond: str) -> list[str]:
    """Every pair of seeds within a condition (RQ1)."""
    pairs = seed_pairs(config["sae"]["seeds"])
    return [match_path(model, layer, cond, a, cond, b) for a, b in pairs]


def survival_matches(config: dict, model: str, layer: int, cond: str) -> list[str]:
    """Every dense x pruned seed pair (RQ2, RQ4): the same-seed pairs (``paired_init``, which
    share their initial dictionary) and every pair of different seeds (``cross_seed``)."""
    seeds = config["sae"]["seeds"]
    return [match_path(model, layer, "dense", a, cond, b) for a in seeds for b in seeds]


def logistic_matches(config: dict, model: str, layer: int, cond: str) -> list[str]:
    """The dense reference SAE vs every seed of a pruned condition: the logistic fit's
    ``paired_init`` (same seed) and ``cross_seed`` (the others) targets, on one feature set."""
    ref = config["analysis"]["reference_seed"]
    return [match_path(model, layer, "dense", ref, cond, s) for s in config["sae"]["seeds"]]


def ablation_condition(config: dict, model: str) -> str:
    """The pruned condition of Table 4: configured, else Wanda (or the first method) at
    the middle of the model's grid."""
    chosen = config["analysis"]["ablation"].get("conditions", {}).get(model)
    if chosen:
        return chosen
    grid = model_grid(config, model)
    method = "wanda" if "wanda" in grid else next(iter(grid))
    sparsities = sorted(s for s in grid[method] if s > 0)
    return condition_name(method, sparsities[(len(sparsities) - 1) // 2])


TABLES = ("table1", "table2", "table3", "table4", "tableB1")
FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6")
FEATURE_TABLES = ("feature_pruning", "distortion_ranks")
FEATURE_FIGURES = ("feature_distortion",)


def analysis_targets(config: dict) -> list[str]:
    extra = ["seed_stability", "survival", "quintile_survival", "logistic_fit"]
    extra += ["activation_survival", "table3_activation", "activation_quintile_survival"]
    extra += ["new_features"]
    figures = [*FIGURES, "fig4_activation"]
    if feature_enabled(config):
        extra += FEATURE_TABLES
        figures += FEATURE_FIGURES
    tables = [fill(TABLE, name=t) for t in (*TABLES, *extra)]
    return tables + [fill(FIGURE, name=f) for f in figures] + feature_page_targets(config)


# --- the feature browser ------------------------------------------------------------------------


FINDINGS_TABLES = {
    name: fill(TABLE, name=name)
    for name in ("table1", "survival", "activation_survival", "table2", "table4")
}
"""The tables the findings page reads, by name."""


def findings_inputs(config: dict) -> dict:
    """What the findings page reads: the LM tables and, with Study ALIGN, its accuracy
    summary and weight pictures."""
    if not align_block(config):
        return dict(FINDINGS_TABLES)
    pictures = [fill(ALIGN_PICTURE, task=t, picture=p) for t, p in align_pictures(config)]
    summary = fill(ALIGN_TABLE, name="accuracy_summary")
    return {**FINDINGS_TABLES, "align_summary": summary, "pictures": pictures}


def feature_page_targets(config: dict) -> list[str]:
    """The findings page, and one feature browser page per model and cached layer."""
    pages = [fill(FEATURE_PAGES, model=m, layer=layer) for m, layer in model_layers(config)]
    return [FINDINGS, *pages]


def feature_page_files(config: dict, model: str, layer: int | str) -> dict[str, dict[str, str]]:
    """The sections of a feature page, by title, each with the files it reads: per pruned
    condition, its survival table and top activations for the dense reference SAE, that
    SAE's matches with the condition's SAE of the same seed (``paired``) and of another
    seed (``cross``), the top activations of that other seed's features (``partner_top``,
    for a dense feature's cross-seed partner), and RQ5's ablation (``ablation``) under the
    ablated condition; then
    the same without matches for the SAE trained elsewhere, if the layer has one."""
    ref, other = config["analysis"]["reference_seed"], independent_seed(config)
    where = {"model": model, "layer": layer}
    ablated = ablation_condition(config, model)
    sections = {}
    for cond in pruned_conditions(config, model):
        sections[cond] = {
            "survival": fill(SURVIVAL, cond=cond, **where),
            "top": fill(TOP_ACTIVATIONS, cond=cond, **where),
            "paired": match_path(model, layer, "dense", ref, cond, ref),
            "cross": match_path(model, layer, "dense", ref, cond, other),
            "partner_top": fill(REVERSE_TOP_ACTIVATIONS, cond=cond, seed=other, **where),
        }
        if cond == ablated:
            sections[cond]["ablation"] = fill(ABLATION, cond=cond, side="dense", **where)
    pretrained = pretrained_saes(config, model).get(int(layer))
    for cond in pruned_conditions(config, model) if pretrained else []:
        sections[f"{cond}: {pretrained['label']}"] = {
            "survival": fill(PRETRAINED_SURVIVAL, cond=cond, **where),
            "top": fill(PRETRAINED_TOP_ACTIVATIONS, cond=cond, **where),
        }
    return sections


# --- feature-aware pruning (pruning.feature) --------------------------------------------------


def feature_site_files(config: dict, model: str, pattern: str = FEATURE_BASIS) -> list[str]:
    """``pattern`` (a site's basis, cache...) for both sites of every block of
    ``pruning.feature.blocks``, block by block."""
    return [
        fill(pattern, model=model, layer=block, site=site)
        for block in feature_blocks(config, model)
        for site in SITES
    ]


def pruning_bases(config: dict, model: str, method: str) -> list[str]:
    """What a prune job reads beside the model: the feature bases, for a feature method."""
    base, _ = parse_method(method)
    return feature_site_files(config, model) if base in FEATURE_AWARE else []


def all_distortions(config: dict) -> list[tuple[tuple, str]]:
    """(model, condition) and its distortion table, for every pruned condition."""
    return [
        ((model, cond), fill(DISTORTION, model=model, cond=cond))
        for model in config["models"]
        for cond in pruned_conditions(config, model)
    ]


# --- what the tables read, over the whole grid ----------------------------------------------


def each_layer_condition(config: dict, paths_for, conds_for=conditions) -> list[str]:
    """``paths_for(config, model, layer, cond)`` over every cached layer and condition."""
    return [
        path
        for model, layer in model_layers(config)
        for cond in conds_for(config, model)
        for path in paths_for(config, model, layer, cond)
    ]


def all_stability_matches(config: dict) -> list[str]:
    return each_layer_condition(config, stability_matches)


def all_survival_matches(config: dict) -> list[str]:
    return each_layer_condition(config, survival_matches, pruned_conditions)


def all_logistic_matches(config: dict) -> list[str]:
    return each_layer_condition(config, logistic_matches, pruned_conditions)


def all_floor_matches(config: dict) -> list[str]:
    """The dense seed floor: every pair of dense seeds (RQ1's dense stability matches)."""
    return each_layer_condition(config, stability_matches, lambda c, m: ["dense"])


def all_sae_files(config: dict, name: str, conds_for=conditions, seeds=None) -> list[str]:
    """``name`` (``metrics.json``, ``cfg.json``) of every SAE of the grid, or of ``seeds``."""
    return each_layer_condition(
        config,
        lambda c, m, layer, cond: [
            fill(SAE_FILE, name=name, model=m, cond=cond, layer=layer, seed=seed)
            for seed in seeds or c["sae"]["seeds"]
        ],
        conds_for,
    )


def all_dense_metrics(config: dict) -> list[str]:
    return all_sae_files(config, "metrics.json", lambda c, m: ["dense"])


def all_reference_metrics(config: dict) -> list[str]:
    seed = config["analysis"]["reference_seed"]
    return all_sae_files(config, "metrics.json", lambda c, m: ["dense"], [seed])


def all_transfer_results(config: dict) -> list[str]:
    trained = each_layer_condition(
        config, lambda c, m, layer, cond: [fill(TRANSFER, model=m, layer=layer, cond=cond)]
    )
    pretrained = [
        fill(PRETRAINED_TRANSFER, model=model, layer=layer, cond=cond)
        for model, layer in pretrained_layers(config)
        for cond in conditions(config, model)
    ]
    return trained + pretrained


def all_perplexities(config: dict) -> list[str]:
    return [
        fill(PERPLEXITY, model=model, cond=cond)
        for model in config["models"]
        for cond in conditions(config, model)
    ]


def all_ablation_results(config: dict) -> list[str]:
    return [
        fill(ABLATION, model=model, layer=layer, cond=ablation_condition(config, model), side=side)
        for model, layer in model_layers(config)
        for side in ("dense", "pruned")
    ]


def activation_survival_inputs(config: dict) -> list[tuple[tuple, str]]:
    """(model, layer, pruned condition) and its activation-level survival table."""
    return [
        ((model, layer, cond), fill(SURVIVAL, model=model, layer=layer, cond=cond))
        for model, layer in model_layers(config)
        for cond in pruned_conditions(config, model)
    ]


def survival_inputs_by_sae(config: dict) -> list[tuple[tuple, str]]:
    """The same per (model, layer, condition, SAE), for the dense SAE trained here and for
    each SAE trained elsewhere (``models.<m>.pretrained_saes``)."""
    trained = trained_sae_label(config)
    return [((*key, trained), path) for key, path in activation_survival_inputs(config)] + [
        (
            (model, layer, cond, pretrained_saes(config, model)[layer]["label"]),
            fill(PRETRAINED_SURVIVAL, model=model, layer=layer, cond=cond),
        )
        for model, layer in pretrained_layers(config)
        for cond in pruned_conditions(config, model)
    ]


def new_feature_inputs(config: dict) -> list[tuple[tuple, str]]:
    """(model, layer, condition) and its reverse view at the independent seed (dense: the
    floor)."""
    seed = independent_seed(config)
    keys = [(m, layer, c) for m, layer in model_layers(config) for c in conditions(config, m)]
    return [
        ((m, layer, c), fill(REVERSE_SURVIVAL, model=m, layer=layer, cond=c, seed=seed))
        for m, layer, c in keys
    ]
