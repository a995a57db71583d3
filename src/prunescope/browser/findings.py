"""The findings page: per model, one row per condition with every measure the run made,
and the sentences those numbers support, each computed from the tables (nothing typed in).

Every survival number stands beside its control: decoder survival of SAEs that share an
initialisation (paired-init) beside that of SAEs that do not (cross-seed) and the dense
seed floor, and activation survival beside the matched-noise control.
"""

from __future__ import annotations

import base64
import html
import math

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = {
    "condition": "condition",
    "perplexity": "perplexity",
    "perplexity_ratio": "× dense perplexity",
    "paired_init": "decoder survival, paired-init",
    "cross_seed": "decoder survival, cross-seed",
    "seed_floor": "dense seed floor",
    "activation": "activation survival",
    "matched_noise": "under matched noise",
    "fvu": "transfer FVU",
    "fvu_over_dense": "FVU / dense FVU",
    "robust_kl": "ablation KL, robust",
    "fragile_kl": "ablation KL, fragile",
    "robust_kl_when_fired": "robust, where it fires",
    "fragile_kl_when_fired": "fragile, where it fires",
}


def findings_table(
    perplexity: pd.DataFrame,
    decoder: pd.DataFrame,
    activation: pd.DataFrame,
    transfer: pd.DataFrame,
    ablation: pd.DataFrame,
    *,
    tau: float,
    correlation_tau: float,
    reference_sae: str,
) -> pd.DataFrame:
    """One row per (model, layer, condition): perplexity and its ratio to dense; mutual-
    nearest-neighbour decoder survival at ``tau`` (paired-init, cross-seed, the dense seed
    floor); activation survival of the dense reference SAE (``reference_sae``, its label in
    the tables) at ``correlation_tau`` and under matched noise; the transfer FVU of that
    SAE; RQ5's ablation KL where measured."""
    ppl = perplexity.set_index(["model", "condition"])["perplexity"]
    dense_ppl = perplexity[perplexity["condition"] == "dense"].set_index("model")["perplexity"]
    at_tau = decoder[np.isclose(decoder["tau"], tau)]
    mnn = at_tau.pivot_table(
        index=["model", "layer", "condition"], columns="definition", values="mnn_mean"
    )
    floor = at_tau.groupby(["model", "layer", "condition"])["seed_floor_mnn"].first()
    trained = activation[activation["sae"] == reference_sae]
    kept = trained[np.isclose(trained["tau"], correlation_tau)].pivot_table(
        index=["model", "layer", "condition"], columns="definition", values="survival"
    )
    rows = []
    for (model, layer, cond), row in mnn.iterrows():
        key = (model, layer, cond)
        rows.append(
            {
                "model": model,
                "layer": int(layer),
                "condition": cond,
                "perplexity": ppl.get((model, cond), math.nan),
                "perplexity_ratio": ppl.get((model, cond), math.nan)
                / dense_ppl.get(model, math.nan),
                "paired_init": row.get("paired_init", math.nan),
                "cross_seed": row.get("cross_seed", math.nan),
                "seed_floor": floor.get(key, math.nan),
                "activation": _at(kept, key, "activation"),
                "matched_noise": _at(kept, key, "matched_noise"),
                **_transfer_fvu(transfer[transfer["sae"] == reference_sae], model, layer, cond),
                **_ablation_kl(ablation, model, layer, cond),
            }
        )
    return pd.DataFrame(rows, columns=["model", "layer", *COLUMNS])


def _at(frame: pd.DataFrame, key: tuple, column: str) -> float:
    if key not in frame.index or column not in frame.columns:
        return math.nan
    return float(frame.loc[key, column])


def _transfer_fvu(transfer: pd.DataFrame, model: str, layer: int, cond: str) -> dict:
    rows = transfer[
        (transfer["model"] == model)
        & (transfer["layer"] == layer)
        & (transfer["condition"] == cond)
    ]
    if rows.empty:
        return {"fvu": math.nan, "fvu_over_dense": math.nan}
    return {key: float(rows[key].iloc[0]) for key in ("fvu", "fvu_over_dense")}


ABLATION_COLUMNS = ("robust_kl", "fragile_kl", "robust_kl_when_fired", "fragile_kl_when_fired")


def _ablation_kl(ablation: pd.DataFrame, model: str, layer: int, cond: str) -> dict:
    rows = ablation[
        (ablation["model"] == model)
        & (ablation["layer"] == layer)
        & (ablation["condition"] == cond)
        & (ablation["side"] == "dense")
    ]
    if rows.empty:
        return dict.fromkeys(ABLATION_COLUMNS, math.nan)
    return {key: float(rows[key].iloc[0]) for key in ABLATION_COLUMNS}


def findings_sentences(table: pd.DataFrame, *, tau: float, correlation_tau: float) -> list[str]:
    """What one model-layer's rows support, each sentence only where its numbers exist."""
    said = []
    if table["perplexity_ratio"].notna().any():
        worst = table.loc[table["perplexity_ratio"].idxmax()]
        best = table.loc[table["perplexity_ratio"].idxmin()]
        said.append(
            f"Relative to the dense model, perplexity is lowest under {best['condition']} "
            f"({best['perplexity_ratio']:.3f}×) and highest under {worst['condition']} "
            f"({worst['perplexity_ratio']:.3f}×)."
        )
    gap = (table["paired_init"] - table["cross_seed"]).dropna()
    if len(gap):
        said.append(
            f"Decoder survival at cosine {tau:g}: paired-init SAEs, which share their initial "
            f"dictionary with the dense SAE, keep {_span(table['paired_init'])} of the dense "
            f"features, cross-seed SAEs {_span(table['cross_seed'])}; paired-init exceeds "
            f"cross-seed in {int((gap > 0).sum())} of {len(gap)} conditions (median "
            f"{100 * gap.median():+.0f} points)"
            + (
                ": that much of paired-init survival comes with the shared initialisation, "
                "not with the pruned model"
                if (gap > 0).all()
                else ""
            )
            + f". The dense seed floor is {_span(table['seed_floor'])}."
        )
    noise = (table["activation"] - table["matched_noise"]).dropna()
    if len(noise):
        below = table.loc[noise.index[noise < 0], "condition"].tolist()
        said.append(
            f"Activation survival (correlation ≥ {correlation_tau:g}) is "
            f"{_span(table['activation'])}; a random perturbation as large as pruning's keeps "
            f"{_span(table['matched_noise'])}. "
            + (
                f"Pruning keeps fewer features than that noise under {', '.join(below)}."
                if below
                else "Every condition keeps at least as many features as that noise."
            )
        )
    said += _rank_sentence(table)
    kl = table.dropna(subset=["robust_kl", "fragile_kl"])
    for row in kl.itertuples():
        said.append(
            f"Under {row.condition}, each robust feature ablated alone shifts the next-token "
            f"distribution by a mean KL of {row.robust_kl:.3g}, each fragile one by "
            f"{row.fragile_kl:.3g}; on the prompts where the feature fires, "
            f"{row.robust_kl_when_fired:.3g} and {row.fragile_kl_when_fired:.3g}."
        )
    return said


def _rank_sentence(table: pd.DataFrame) -> list[str]:
    """Spearman's rho of perplexity growth with activation survival, beside the same for
    the matched-noise control (which also falls as pruning moves the activations further)."""
    both = table[["perplexity_ratio", "activation", "matched_noise"]].dropna()
    if len(both) < 3 or both.nunique().min() < 2:
        return []
    rho = {
        column: stats.spearmanr(both["perplexity_ratio"], both[column]).statistic
        for column in ("activation", "matched_noise")
    }
    return [
        f"Over the {len(both)} pruned conditions, the rank correlation (Spearman) of "
        f"perplexity growth with activation survival is {rho['activation']:+.2f}, with "
        f"survival under matched noise {rho['matched_noise']:+.2f}."
    ]


def _span(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "not measured"
    low, high = values.min(), values.max()
    return f"{low:.0%}" if math.isclose(low, high) else f"{low:.0%} to {high:.0%}"


ALIGN_COLUMNS = [
    "task",
    "structure",
    "sparsity",
    "method",
    "test_accuracy_mean",
    "test_accuracy_se",
    "c1_divergence_mean",
    "c1_divergence_se",
]


def align_findings(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Study ALIGN at each task's and structure's highest sparsity, from its accuracy
    summary: every method's pruned test accuracy and C1 divergence (the distance of the
    pruned net's feature-space weights to the dense ones), best first, and one sentence
    per task and structure."""
    pruned = summary[summary["stage"] == "pruned"]
    tables, said = [], []
    for (task, structure), rows in pruned.groupby(["task", "structure"], sort=True):
        sparsity = rows["sparsity"].max()
        at = rows[rows["sparsity"] == sparsity].sort_values(
            ["test_accuracy_mean", "method"], ascending=[False, True]
        )
        tables.append(at[ALIGN_COLUMNS])
        best, closest = at.iloc[0], at.loc[at["c1_divergence_mean"].idxmin()]
        text = (
            f"{task}, {structure}, sparsity {sparsity:g}: {best['method']} keeps the most test "
            f"accuracy ({best['test_accuracy_mean']:.3f} ± {best['test_accuracy_se']:.3f} "
            "standard error over trials)"
        )
        magnitude = at[at["method"] == "mp"]
        if len(magnitude) and best["method"] != "mp":
            text += f", magnitude pruning {magnitude['test_accuracy_mean'].iloc[0]:.3f}"
        text += (
            f"; {closest['method']} keeps C1 closest to the dense net's (divergence "
            f"{closest['c1_divergence_mean']:.3g})."
        )
        said.append(text)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=ALIGN_COLUMNS)
    return table, said


def findings_html(
    table: pd.DataFrame,
    sentences: dict[tuple, list[str]],
    align: tuple[pd.DataFrame, list[str]] | None = None,
    pictures: dict[str, bytes] | None = None,
) -> str:
    """The page: per model and layer, its sentences and its table; then Study ALIGN's
    sentences, table and weight pictures (PNG bytes by name, embedded), if given."""
    parts = []
    for (model, layer), rows in table.groupby(["model", "layer"], sort=False):
        parts.append(f"<h2>{html.escape(str(model))}, layer {layer}</h2><ul>")
        parts += [f"<li>{html.escape(s)}</li>" for s in sentences.get((model, layer), [])]
        parts.append("</ul>" + _table_html(rows))
    if align is not None:
        align_table, said = align
        parts.append("<h2>Study ALIGN</h2><ul>")
        parts += [f"<li>{html.escape(s)}</li>" for s in said]
        parts.append("</ul>" + _table_html(align_table, {c: c for c in align_table.columns}))
    for name, png in (pictures or {}).items():
        data = base64.b64encode(png).decode()
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Findings</title>'
        f"<style>{STYLE}</style></head><body><h1>Findings</h1><p>{html.escape(INTRO)}</p>"
        + "".join(parts)
        + "</body></html>"
    )


def _table_html(rows: pd.DataFrame, columns: dict[str, str] = COLUMNS) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row[key])}</td>" for key in columns) + "</tr>"
        for _, row in rows.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, str):
        return html.escape(value)
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.3g}"


INTRO = (
    "Every number below comes from this run's tables (results/tables); each sentence is "
    "computed from them. Survival is a share of the dense features: decoder survival "
    "counts mutual nearest neighbours between the dense and the pruned SAE's decoders, "
    "activation survival the features of the dense reference SAE whose activations "
    "correlate across the dense and the pruned model. The controls stand beside them."
)
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:80em}"
    "table{border-collapse:collapse;font-size:.85em;margin:.5em 0 2em}"
    "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}"
    "th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}"
    "li{margin:.3em 0} figure{display:inline-block;margin:.5em} img{max-width:38em}"
)
