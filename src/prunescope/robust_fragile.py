"""RQ5, Table 4: the robust and the fragile features of one SAE, ablated one at a time.

An SAE's alive features are ranked by how well they survive pruning: by activation-level
survival (``selection: activation``) or by best decoder cosine to the other SAE of the
same seed (``decoder``, the paper's). The top and bottom ``n`` are ablated alone
(``prunescope.ablation.ablation_kl``), and their mean KLs are compared beside how often
each group fired on the prompts, since a feature that does not fire costs nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from prunescope.ablation import ablation_kl
from prunescope.corpus import windows_from_jsonl
from prunescope.io import read_json
from prunescope.match_files import load_matches
from prunescope.models import load_causal_lm
from prunescope.sae import load_sae

log = logging.getLogger("prunescope")

TABLE4_COLUMNS = [
    "model",
    "layer",
    "side",
    "condition",
    "mode",
    "selection",
    "robust_kl",
    "fragile_kl",
    "delta_pct",
    "robust_sem",
    "fragile_sem",
    "n_robust",
    "n_fragile",
    "robust_fired_fraction",
    "fragile_fired_fraction",
    "robust_kl_when_fired",
    "fragile_kl_when_fired",
    "n_robust_fired",
    "n_fragile_fired",
    "n_prompts",
    "context",
    "reconstruction_baseline_kl",
    "selection_note",
]
"""Table 4's columns, in order."""


def activation_ranking(table, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(score, alive) to rank one SAE's features by activation-level survival.

    ``side="dense"``: the dense reference SAE's per-feature survival table
    (``prunescope.survival.activation_survival``): score = the correlation of a feature's
    activations on the dense and the pruned tokens, alive = fires on the dense tokens.
    ``side="pruned"``: a pruned SAE's reverse view (``ReverseMatch.table``): score = its best
    correlation with any dense-SAE feature, alive = fires on the pruned tokens. An alive
    feature with no defined correlation (silent or constant on the other side) scores -1,
    the lowest a correlation can be: it is as fragile as a feature gets.
    """
    if side not in ("dense", "pruned"):
        raise ValueError(f"side must be 'dense' or 'pruned', got {side!r}")
    rate = table["dense_rate" if side == "dense" else "pruned_rate"].to_numpy(dtype=np.float64)
    score = np.nan_to_num(table["correlation"].to_numpy(dtype=np.float64), nan=-1.0)
    return score, rate > 0


def robust_and_fragile(best_cosine, alive_mask, n: int) -> dict:
    """The ``n`` alive features with the highest (``robust``) and lowest (``fragile``)
    best-match cosine to the other dictionary (paper section 3.4: top and bottom 100).

    Ties go to the lower feature index in both lists. When fewer than ``2n`` features are
    alive, both lists shrink to ``n_alive // 2`` so they never share a feature; the
    returned ``n``, ``shrunk`` and ``note`` say so.
    """
    cosine = np.asarray(best_cosine, dtype=np.float64)
    alive = np.asarray(alive_mask)
    if cosine.ndim != 1 or alive.shape != cosine.shape:
        raise ValueError(
            f"best_cosine {cosine.shape} and alive_mask {alive.shape} must be 1-D of one length"
        )
    if alive.dtype != np.bool_:
        raise ValueError("alive_mask must be a boolean array")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n={n!r} must be a positive integer")
    alive_idx = np.flatnonzero(alive)
    if not np.isfinite(cosine[alive_idx]).all():
        raise ValueError("best_cosine must be finite for every alive feature")
    if len(alive_idx) < 2:
        raise ValueError(f"only {len(alive_idx)} alive features: need 2 to pick robust/fragile")
    n_used = min(int(n), len(alive_idx) // 2)
    descending = alive_idx[np.lexsort((alive_idx, -cosine[alive_idx]))]
    ascending = alive_idx[np.lexsort((alive_idx, cosine[alive_idx]))]
    shrunk = n_used < n
    note = (
        f"only {len(alive_idx)} alive features, fewer than 2 * {n}: n shrunk to {n_used}"
        if shrunk
        else ""
    )
    return {
        "robust": descending[:n_used],
        "fragile": ascending[:n_used],
        "n": n_used,
        "n_requested": int(n),
        "n_alive": int(len(alive_idx)),
        "shrunk": shrunk,
        "note": note,
    }


def summarise_ablation(kl_robust, kl_fragile) -> dict:
    """Table-4 row from per-feature mean KLs of the robust and fragile features.

    ``delta_pct = |robust_kl - fragile_kl| / ((robust_kl + fragile_kl) / 2) * 100``, the
    absolute difference relative to the mean of the two (0 when both are 0). The paper
    calls its Δ the "absolute percent difference" without naming the denominator; on its
    table's rounded values the mean and either KL alone give the same first decimal.
    ``*_sem`` is the standard error over features (sample std / sqrt(n); NaN for n < 2).
    """
    robust = np.asarray(kl_robust, dtype=np.float64).reshape(-1)
    fragile = np.asarray(kl_fragile, dtype=np.float64).reshape(-1)
    if len(robust) == 0 or len(fragile) == 0:
        raise ValueError("kl_robust and kl_fragile must each hold at least one KL value")
    if not (np.isfinite(robust).all() and np.isfinite(fragile).all()):
        raise ValueError("kl_robust and kl_fragile must be finite")
    robust_kl, fragile_kl = float(robust.mean()), float(fragile.mean())
    mean = (robust_kl + fragile_kl) / 2
    delta = 0.0 if mean == 0 else abs(robust_kl - fragile_kl) / mean * 100
    return {
        "robust_kl": robust_kl,
        "fragile_kl": fragile_kl,
        "delta_pct": delta,
        "n_robust": len(robust),
        "n_fragile": len(fragile),
        "robust_sem": _sem(robust),
        "fragile_sem": _sem(fragile),
    }


def kl_when_fired(kl_per_prompt, fired, group: str) -> dict:
    """How often one group's features fired on the prompts, and their KL where they did.

    A feature that never fires on a prompt has an ablation KL of exactly 0 there, so a group
    of rarer features has a lower mean KL whatever the features do when present. This splits
    the two: ``{group}_fired_fraction`` is the mean over features of the share of prompts on
    which the feature fired; ``{group}_kl_when_fired`` the mean, over the features that
    fired at least once (``n_{group}_fired``), of their mean KL over those prompts.
    ``kl_per_prompt`` and ``fired`` are ``(n_features, n_prompts)``.
    """
    kl = np.asarray(kl_per_prompt, dtype=np.float64)
    on = np.asarray(fired, dtype=bool)
    if kl.shape != on.shape or kl.ndim != 2:
        raise ValueError(f"kl_per_prompt {kl.shape} and fired {on.shape} must be one 2-D shape")
    counts = on.sum(axis=1)
    ever = counts > 0
    when = (kl * on).sum(axis=1)[ever] / counts[ever]
    return {
        f"{group}_fired_fraction": float(on.mean(axis=1).mean()) if len(on) else math.nan,
        f"{group}_kl_when_fired": float(when.mean()) if ever.any() else math.nan,
        f"n_{group}_fired": int(ever.sum()),
    }


def _sem(values: np.ndarray) -> float:
    if len(values) < 2:
        return math.nan
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def ranking_scores(
    selection: str, side: str, ranking_path: str, sae_metrics_path: str
) -> tuple[np.ndarray, np.ndarray]:
    """(score, alive) of one SAE's features under ``selection``, from the file that ranks them.

    ``activation``: ``ranking_path`` is the CSV ``activation_ranking`` reads. ``decoder``: it
    is the match file of the dense and the pruned SAE of the same seed; dense features
    score their best cosine in the pruned SAE, pruned features theirs in the dense SAE, and
    a feature is alive when it fires on the eval split (``sae_metrics_path``).
    """
    if selection == "activation":
        return activation_ranking(pd.read_csv(ranking_path), side)
    match = load_matches(ranking_path)
    score = match.a_best_cos if side == "dense" else match.b_best_cos
    alive = np.asarray(read_json(sae_metrics_path)["firing_rate"]) > 0
    return score, alive


def ablation_record(result: dict, chosen: dict, settings: dict) -> dict:
    """One run's Table 4 numbers (``summarise_ablation``, ``kl_when_fired`` per group) and
    what they rest on, from ``ablation_kl``'s ``result`` over the robust then the fragile
    features of ``chosen`` (``robust_and_fragile``)."""
    kl = np.asarray(result["kl"])
    n = len(chosen["robust"])
    summary = summarise_ablation(kl[:n], kl[n:])
    per_prompt, fired = result["kl_per_prompt"], result["fired"]
    summary |= kl_when_fired(per_prompt[:n], fired[:n], "robust")
    summary |= kl_when_fired(per_prompt[n:], fired[n:], "fragile")
    return {
        "mode": settings["mode"],
        "selection": settings["selection"],
        "n_prompts": result["n_prompts"],
        "context": result["context"],
        "selection_note": chosen.get("note", ""),
        "reconstruction_baseline_kl": result["reconstruction_baseline_kl"],
        **summary,
        "robust_features": np.asarray(chosen["robust"]).tolist(),
        "fragile_features": np.asarray(chosen["fragile"]).tolist(),
        "robust_kl_per_feature": kl[:n].tolist(),
        "fragile_kl_per_feature": kl[n:].tolist(),
    }


def ablate_robust_and_fragile(
    model_path: str,
    sae_path: str,
    prompts_path: str,
    ranking_path: str,
    sae_metrics_path: str,
    *,
    layer: int,
    side: str,
    settings: dict,
    dtype: str,
    device: str,
) -> dict:
    """RQ5 for one SAE: its robust and fragile features (ranked by ``ranking_scores``)
    ablated alone from the output of decoder block ``layer`` of the model at ``model_path``,
    on the first ``n_prompts`` windows of ``context`` tokens of ``prompts_path``.

    ``settings`` is the config's ``analysis.ablation`` block; ``sae_path`` the SAE's
    ``sae.safetensors`` (``cfg.json`` beside it); ``dtype`` and ``device`` go to
    ``load_causal_lm``. Returns ``ablation_record``'s numbers.
    """
    score, alive = ranking_scores(settings["selection"], side, ranking_path, sae_metrics_path)
    chosen = robust_and_fragile(score, alive, settings["n_features"])
    if chosen.get("note"):
        log.info("%s", chosen["note"])
    model, tokenizer = load_causal_lm(model_path, dtype, device)
    n_prompts, context = settings["n_prompts"], settings["context"]
    prompts = windows_from_jsonl(tokenizer, prompts_path, context, n_prompts * context)
    sae = load_sae(Path(sae_path).parent)
    result = ablation_kl(
        model,
        sae,
        layer,
        prompts[:n_prompts],
        np.concatenate([chosen["robust"], chosen["fragile"]]),
        mode=settings["mode"],
        feature_batch_size=settings["feature_batch_size"],
        prompt_batch_size=settings["prompt_batch_size"],
    )
    record = ablation_record(result, chosen, settings)
    log.info(
        "robust %.5f fragile %.5f delta %.2f%%",
        record["robust_kl"],
        record["fragile_kl"],
        record["delta_pct"],
    )
    return record


def ablation_table(records: Iterable[dict]) -> pd.DataFrame:
    """Table 4: one row per ablation record (``ablate_robust_and_fragile``'s, with the
    model, layer, condition and side it ran on), in ``TABLE4_COLUMNS``."""
    return pd.DataFrame(list(records))[TABLE4_COLUMNS]
