"""What the browser's rules run: the activation-level survival with each feature's
strongest activations and their contexts kept, and the feature pages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunescope.activations import (
    TOKENS_DIGEST_ATTR,
    aligned_eval_splits,
    read_cache_info,
    tokens_digest,
)
from prunescope.browser.contexts import feature_contexts, own_contexts
from prunescope.browser.findings import (
    align_findings,
    findings_html,
    findings_sentences,
    findings_table,
)
from prunescope.browser.pages import feature_page
from prunescope.browser.top import TopActivations, load_top_activations
from prunescope.corpus import windows_from_jsonl
from prunescope.errors import UserInputError
from prunescope.io import read_json
from prunescope.match_files import load_matches
from prunescope.models import load_tokenizer, pick_device
from prunescope.pretrained import load_dictionary
from prunescope.sae import load_sae
from prunescope.stats import firing_rate_quintiles
from prunescope.survival import (
    activation_survival,
    as_latent_encoder,
    best_dense_partners,
    top_activations_of,
)


def survival_with_top_activations(
    dense_path: str,
    pruned_path: str,
    sae_path: str,
    *,
    dense_capture: dict,
    capture: dict,
    control_seed: int,
    top_n: int,
    n_contexts: int,
    before: int,
    after: int,
    device: str = "auto",
):
    """``(survival table, top activations by side, contexts, attrs)`` of one SAE on a dense
    and a pruned cache of the same tokens: ``activation_survival`` keeping each feature's
    ``top_n`` strongest activations on either side, then one more pass for the feature's
    activations on the context of its first ``n_contexts`` dense top rows."""
    attrs = read_cache_info(dense_path)["attrs"]
    digest = TOKENS_DIGEST_ATTR.format(split="eval")
    rows_per_window = int(attrs["context"]) - int(attrs["skip_positions"])
    with aligned_eval_splits(dense_path, pruned_path, dense_capture, capture) as (
        dense,
        pruned,
        names,
    ):
        sae = load_dictionary(sae_path, pick_device(device))
        tops = top_activations_of(sae, top_n)
        table = activation_survival(
            dense, pruned, sae, control_seed=control_seed, sources=names, tops=tops
        )
        sides = {"dense": tops[0].result(), "pruned": tops[1].result()}
        contexts = feature_contexts(
            dense,
            pruned,
            sae,
            sides["dense"],
            n_contexts=n_contexts,
            before=before,
            after=after,
            rows_per_window=rows_per_window,
            sources=names,
        )
    record = {
        "sae": str(sae_path),
        "dense_cache": str(dense_path),
        "pruned_cache": str(pruned_path),
        "context": int(attrs["context"]),
        "skip_positions": int(attrs["skip_positions"]),
        "before": before,
        "after": after,
        digest: attrs[digest],
    }
    return table, sides, contexts, record


def reverse_with_top_activations(
    dense_path: str,
    own_path: str,
    sae_dir: str,
    dense_sae_dir: str,
    *,
    taus,
    dense_capture: dict,
    capture: dict,
    top_n: int,
    n_contexts: int,
    before: int,
    after: int,
    device: str = "auto",
):
    """``(reverse match, top activations, contexts, attrs)``: the reverse view of one
    condition's SAE (``best_dense_partners``), keeping each of its features' strongest
    activations on the condition's own eval rows and their contexts, which the feature
    pages show for a dense feature's best partner in that SAE."""
    attrs = read_cache_info(dense_path)["attrs"]
    rows_per_window = int(attrs["context"]) - int(attrs["skip_positions"])
    with aligned_eval_splits(dense_path, own_path, dense_capture, capture) as (
        dense,
        own,
        (dense_name, own_name),
    ):
        dense_sae = load_sae(dense_sae_dir, pick_device(device))
        sae = load_sae(sae_dir, pick_device(device))
        top = TopActivations(as_latent_encoder(sae).d_sae, top_n)
        reverse = best_dense_partners(
            own, dense, sae, dense_sae, taus, sources=(own_name, dense_name), top=top
        )
        result = top.result()
        contexts = own_contexts(
            own,
            sae,
            result,
            n_contexts=n_contexts,
            before=before,
            after=after,
            rows_per_window=rows_per_window,
            source=own_name,
        )
    record = {"sae": str(sae_dir), "cache": str(own_path), "before": before, "after": after}
    record.update(context=int(attrs["context"]), skip_positions=int(attrs["skip_positions"]))
    return reverse, {"own": result}, contexts, record


# --- the feature pages ---


def sample_features(table: pd.DataFrame, tau: float, per_quintile: int, seed: int) -> pd.DataFrame:
    """Up to ``per_quintile`` survived and as many destroyed features from each firing-rate
    quintile of the alive dense features (a feature survives when its activation
    correlation reaches ``tau``), drawn with ``seed``: columns feature, quintile, status."""
    quintile = firing_rate_quintiles(table["dense_rate"].to_numpy())
    survived = (table["correlation"].fillna(-np.inf) >= tau).to_numpy()
    rng = np.random.default_rng(seed)
    picked = []
    for q in range(1, 6):
        for status, mask in (("survived", survived), ("destroyed", ~survived)):
            candidates = table["feature"].to_numpy()[(quintile == q) & mask]
            chosen = rng.choice(candidates, min(per_quintile, len(candidates)), replace=False)
            picked += [(int(f), q, status) for f in sorted(chosen)]
    return pd.DataFrame(picked, columns=["feature", "quintile", "status"])


def check_tokens(windows: torch.Tensor, skip_positions: int, digest: str, source: str) -> None:
    """Refuse rebuilt eval windows that are not the tokens behind the cache's rows."""
    if tokens_digest(windows, skip_positions) != digest:
        raise UserInputError(
            f"the eval tokens rebuilt from {source} are not those behind the activations the "
            "top activations were read from (their SHA-256 differ): the corpus or tokenizer "
            "changed since; rerun the workflow so both are rebuilt"
        )


def partner_cards(partner: dict, token_text):
    """A function of a dense feature giving ``{"partner": ...}``: its best partner's id and
    that feature's own strongest contexts in the pruned model (one ``pruned`` line each)."""
    sides, contexts, attrs = load_top_activations(partner["top"])
    own = {**contexts, "dense": contexts["own"], "pruned": contexts["own"]}

    def of(feature: int) -> dict:
        index = int(partner["index"][feature])
        if index < 0:
            return {}
        shown = card_contexts(index, own, token_text, attrs)
        scale = float(np.nan_to_num(sides["own"].values[index, 0]))
        return {"partner": {"feature": index, "scale": scale, "contexts": shown}}

    return of


def card_contexts(feature: int, contexts: dict, token_text, attrs: dict) -> list[dict]:
    """Each context of ``feature`` whose strongest row exists: tokens, dense and pruned
    activations (None outside the window), and the index of its strongest token."""
    skip, before = int(attrs["skip_positions"]), int(attrs["before"])
    rows_per_window = int(attrs["context"]) - skip
    shown = []
    for c in range(contexts["rows"].shape[1]):
        rows = contexts["rows"][feature, c]
        if rows[before] < 0:
            continue
        sides = {
            side: [None if r < 0 else float(v) for r, v in zip(rows, values, strict=True)]
            for side, values in (
                ("dense", contexts["dense"][feature, c]),
                ("pruned", contexts["pruned"][feature, c]),
            )
        }
        tokens = [
            token_text(r // rows_per_window, r % rows_per_window + skip) if r >= 0 else ""
            for r in rows
        ]
        shown.append({"tokens": tokens, **sides, "peak": before})
    return shown


def condition_cards(
    condition: str,
    table: pd.DataFrame,
    top_file: str,
    partners: dict[str, np.ndarray],
    token_text,
    *,
    tau: float,
    per_quintile: int,
    seed: int,
    ablation: dict | None = None,
    partner: dict | None = None,
) -> dict:
    """One section of the page: its summary sentence and its groups of cards, the sampled
    features by firing-rate quintile and, with RQ5's ``ablation`` record, its robust and
    fragile features as two galleries, each card with its ablation KL. With ``partner``
    (``index``: each dense feature's best partner in another seed's pruned SAE, ``top``:
    that SAE's top activations file), a card also shows its partner's own contexts."""
    sides, contexts, attrs = load_top_activations(top_file)
    partner_of = partner_cards(partner, token_text) if partner else (lambda feature: {})
    rates = table["dense_rate"].to_numpy()
    quintile = dict(zip(table["feature"], firing_rate_quintiles(rates), strict=True))
    table = table.set_index("feature", drop=False)

    def card(feature: int, status: str, **extra) -> dict:
        row = table.loc[feature]
        return {
            "condition": condition,
            "feature": int(feature),
            "quintile": int(quintile[feature]),
            "status": status,
            **{key: float(row[key]) for key in SURVIVAL_NUMBERS},
            **{key: float(cos[feature]) for key, cos in partners.items()},
            "scale": float(np.nan_to_num(sides["dense"].values[feature, 0])),
            "hist_dense": sides["dense"].counts[feature].tolist(),
            "hist_pruned": sides["pruned"].counts[feature].tolist(),
            "contexts": card_contexts(feature, contexts, token_text, attrs),
            **partner_of(feature),
            **extra,
        }

    picked = sample_features(table.reset_index(drop=True), tau, per_quintile, seed)
    groups = [
        (
            f"firing-rate quintile {q}" + QUINTILE_WORDS.get(q, ""),
            [card(p.feature, p.status) for p in picked[picked["quintile"] == q].itertuples()],
        )
        for q in sorted(set(picked["quintile"]))
    ]
    survived = table["correlation"].fillna(-np.inf) >= tau
    for kind in ("robust", "fragile") if ablation else ():
        features, kls = ablation[f"{kind}_features"], ablation[f"{kind}_kl_per_feature"]
        heading = (
            f"RQ5: the {len(features)} most {kind} features, each ablated alone "
            f"(mean KL {ablation[f'{kind}_kl']:.3g})"
        )
        gallery = [
            card(f, "survived" if survived[f] else "destroyed", ablation_kl=float(kl))
            for f, kl in zip(features, kls, strict=True)
        ]
        groups.append((heading, gallery))
    return {
        "condition": condition,
        "summary": section_summary(table, tau, per_quintile, seed),
        "groups": groups,
    }


QUINTILE_WORDS = {1: " (rarest)", 5: " (most frequent)"}


SURVIVAL_NUMBERS = ("dense_rate", "pruned_rate", "correlation", "control_correlation")


def section_summary(table: pd.DataFrame, tau: float, per_quintile: int, seed: int) -> str:
    """One sentence of what the section's numbers say, computed from its survival table."""
    alive = table["dense_rate"] > 0
    n_alive = int(alive.sum())
    if not n_alive:
        return "No dense feature fires on the eval tokens."
    survived = float((table.loc[alive, "correlation"].fillna(-np.inf) >= tau).mean())
    control = float((table.loc[alive, "control_correlation"].fillna(-np.inf) >= tau).mean())
    return (
        f"{n_alive} dense features fire on the eval tokens; {survived:.0%} survive pruning "
        f"(activation correlation ≥ {tau:g}), {control:.0%} survive the matched-noise control. "
        f"Shown: up to {per_quintile} survived and {per_quintile} destroyed features from each "
        f"firing-rate quintile, drawn with seed {seed}."
    )


PAGE_INTRO = (
    "Each card is one feature of an SAE of the dense model (the reference SAE trained here, "
    "or one trained elsewhere where a section says so). Its strongest contexts on the eval "
    "tokens are shown twice: shaded by the feature's activation on the dense model's "
    "activations, then on the pruned model's activations of the same tokens, on one scale "
    "(the feature's strongest dense activation); the outlined token is the context's "
    "strongest. Numbers: "
    "firing rate dense → pruned; the correlation of the feature's activations across the "
    "two models, and the same under a random perturbation as large as pruning's; the "
    "cosine of its decoder row with its best partner in the pruned SAE of the same "
    "initialisation (paired-init) and of another seed (cross-seed), whose own strongest "
    "contexts in the pruned model close the card, whatever that cosine. The histogram "
    "shows its activations on log-spaced bins (dense grey, pruned orange)."
)


def feature_pages(
    model: str,
    layer: int,
    model_folder: str,
    eval_split: str,
    capture: dict,
    conditions: dict[str, dict[str, str]],
    *,
    tau: float,
    per_quintile: int,
    seed: int,
) -> str:
    """The feature browser page of one model and layer. ``conditions`` maps each pruned
    condition to its files: ``survival`` (CSV), ``top`` (top activations), ``paired`` and
    ``cross`` (the dense reference SAE's matches with that condition's SAEs)."""
    tokenizer = load_tokenizer(model_folder)
    settings = capture["activations"]
    windows = windows_from_jsonl(
        tokenizer, eval_split, settings["context"], settings["eval_tokens"]
    )
    decoded: dict[int, str] = {}

    def token_text(window: int, position: int) -> str:
        token = int(windows[window, position])
        if token not in decoded:
            decoded[token] = tokenizer.decode([token])
        return decoded[token]

    sections = []
    for condition, files in conditions.items():
        _, _, attrs = load_top_activations(files["top"])
        digest = attrs[TOKENS_DIGEST_ATTR.format(split="eval")]
        check_tokens(windows, int(attrs["skip_positions"]), digest, eval_split)
        partners = {
            f"{name}_cos": load_matches(files[name]).a_best_cos
            for name in ("paired", "cross")
            if name in files
        }
        ablation = read_json(files["ablation"]) if "ablation" in files else None
        partner = None
        if "partner_top" in files:
            partner = {"index": load_matches(files["cross"]).a_best, "top": files["partner_top"]}
        table = pd.read_csv(files["survival"])
        sections.append(
            condition_cards(
                condition,
                table,
                files["top"],
                partners,
                token_text,
                tau=tau,
                per_quintile=per_quintile,
                seed=seed,
                ablation=ablation,
                partner=partner,
            )
        )
    return feature_page(f"Feature browser: {model}, layer {layer}", PAGE_INTRO, sections)


def findings_page(inputs: dict, *, tau: float, correlation_tau: float, reference_sae: str) -> str:
    """The findings page from the run's tables (``inputs``: ``table1``, ``survival``,
    ``activation_survival``, ``table2``, ``table4``, paths as ``plan.findings_inputs``
    names them); ``reference_sae`` is the dense reference SAE's label in them. With Study
    ALIGN's ``align_summary`` (its accuracy summary) and ``pictures`` (its weight pictures,
    PNG) among the inputs, a section for it too."""
    inputs = dict(inputs)
    align_summary, pictures = inputs.pop("align_summary", None), inputs.pop("pictures", [])
    frames = {name: pd.read_csv(path) for name, path in inputs.items()}
    table = findings_table(
        frames["table1"],
        frames["survival"],
        frames["activation_survival"],
        frames["table2"],
        frames["table4"],
        tau=tau,
        correlation_tau=correlation_tau,
        reference_sae=reference_sae,
    )
    sentences = {
        key: findings_sentences(rows, tau=tau, correlation_tau=correlation_tau)
        for key, rows in table.groupby(["model", "layer"], sort=False)
    }
    align = align_findings(pd.read_csv(align_summary)) if align_summary else None
    shown = {f"{Path(p).parent.name}: {Path(p).stem}": Path(p).read_bytes() for p in pictures}
    return findings_html(table, sentences, align, shown)
