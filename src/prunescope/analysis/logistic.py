"""The logistic fit of RQ4: P(a dense feature survives) from its log firing rate and the
sparsity, per model, layer, pruning method and survival definition."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from prunescope.analysis.definitions import DEFINITIONS, pair_definition
from prunescope.analysis.inputs import reference_firing_rates
from prunescope.conditions import parse_condition
from prunescope.match_files import load_matches
from prunescope.matching import MatchResult, survival_per_feature
from prunescope.stats import fit_survival_logit, survival_target

log = logging.getLogger("prunescope")


def logistic_frame(
    firing_rate: np.ndarray, matches_by_sparsity: dict[float, list[MatchResult]], tau: float
) -> pd.DataFrame:
    """One row per alive dense feature and sparsity: survived = survives in > half the seeds."""
    alive = firing_rate > 0
    frames = []
    for sparsity, matches in sorted(matches_by_sparsity.items()):
        rate = np.mean([survival_per_feature(m, tau) for m in matches], axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "firing_rate": firing_rate[alive],
                    "sparsity": sparsity,
                    "survived": survival_target(rate[alive]),
                    "n_seeds": len(matches),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def logistic_rows(fit: dict, **keys) -> list[dict]:
    """Flatten a fit into one row per term (coefficient, SE, z, p) plus the fit's quality."""
    shared = {
        **keys,
        "tau": fit["tau"],
        "n": fit["n"],
        "n_survived": fit["n_survived"],
        "auc": fit["auc"],
        "accuracy": fit["accuracy"],
        "converged": fit["converged"],
        "note": fit["note"],
    }
    return [{**shared, "term": term, **values} for term, values in fit["coefficients"].items()]


def fit_logit_for(firing_rate, matches_by_sparsity, tau: float) -> dict:
    return fit_survival_logit(logistic_frame(firing_rate, matches_by_sparsity, tau), tau)


def activation_logistic_frame(
    tables_by_sparsity: dict[float, pd.DataFrame], tau: float
) -> pd.DataFrame:
    """One row per alive dense feature and sparsity under activation-level survival: the
    feature survives when its correlation reaches ``tau`` (no correlation: it does not)."""
    frames = []
    for sparsity, table in sorted(tables_by_sparsity.items()):
        rate = table["dense_rate"].to_numpy(dtype=float)
        correlation = np.nan_to_num(table["correlation"].to_numpy(dtype=float), nan=-np.inf)
        alive = rate > 0
        frames.append(
            pd.DataFrame(
                {
                    "firing_rate": rate[alive],
                    "sparsity": sparsity,
                    "survived": correlation[alive] >= tau,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def logistic_fits(
    firing: dict[tuple[str, int], np.ndarray],
    matches: Iterable[MatchResult],
    activation: dict[tuple[str, int, str], pd.DataFrame],
    taus: Sequence[float],
    correlation_taus: Sequence[float],
    reference_seed: int,
) -> tuple[pd.DataFrame, list[str]]:
    """The logistic fit per (model, layer, method) and definition, and its summaries.

    ``activation``: a feature of the dense reference SAE survives when its correlation
    reaches tau (``correlation_taus``). Decoder definitions (cosine ``taus``) need one
    feature set across pairs, so every pair's dense side is the reference-seed SAE
    (``firing`` holds its firing rates): ``paired_init`` is its match with the pruned SAE of
    the same seed; ``cross_seed`` with every other pruned seed, a feature surviving when it
    does in more than half of them.
    """
    groups: dict[tuple, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for match in matches:
        a = match.attrs
        if int(a["seed_a"]) != reference_seed:
            raise ValueError(
                f"the logistic fit compares the dense reference SAE (seed {reference_seed}) "
                f"with pruned SAEs, but got a match of dense seed {a['seed_a']}"
            )
        method, sparsity = parse_condition(a["cond_b"])
        groups[(a["model"], int(a["layer"]), method, pair_definition(a))][sparsity].append(match)
    for (model, layer, cond), table in activation.items():
        method, sparsity = parse_condition(cond)
        groups[(model, int(layer), method, "activation")][sparsity].append(table)

    rank = {d: i for i, d in enumerate(DEFINITIONS)}
    rows, summaries = [], []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], rank[k[3]])):
        model, layer, method, definition = key
        by_sparsity = groups[key]
        if definition == "activation":
            n_pairs = pd.NA
            tables = {s: items[0] for s, items in by_sparsity.items()}
            fits = [
                fit_survival_logit(activation_logistic_frame(tables, tau), tau)
                for tau in correlation_taus
            ]
        else:
            n_pairs = max(len(items) for items in by_sparsity.values())
            fits = [fit_logit_for(firing[(model, layer)], by_sparsity, tau) for tau in taus]
        for fit in fits:
            keys = {"model": model, "layer": layer, "method": method, "definition": definition}
            rows += logistic_rows(fit, **keys, n_pairs=n_pairs)
            header = f"== {model} L{layer} {method} {definition} tau={fit['tau']:g} =="
            summaries.append(f"{header}\n{fit['note'] or ''}\n{fit['summary'] or ''}\n")
    frame = pd.DataFrame(rows)
    frame["n_pairs"] = frame["n_pairs"].astype("Int64")
    return frame, summaries


def logistic_fit_table(
    reference_metrics: Iterable[str],
    match_paths: Iterable[str],
    activation: dict[tuple[str, int, str], pd.DataFrame],
    taus: Sequence[float],
    correlation_taus: Sequence[float],
    reference_seed: int,
) -> tuple[pd.DataFrame, str]:
    """``logistic_fits`` of the saved reference-seed matches and the activation tables, with
    the dense reference SAEs' firing rates read from their ``metrics.json``; the summaries
    joined into one text. Each fit's quality is logged."""
    table, summaries = logistic_fits(
        reference_firing_rates(reference_metrics),
        map(load_matches, match_paths),
        activation,
        taus,
        correlation_taus,
        reference_seed,
    )
    fits = table.drop_duplicates(["model", "layer", "method", "definition", "tau"])
    for _, row in fits.iterrows():
        log.info(
            "%s L%s %s %s tau=%g: AUC %.3f accuracy %.3f %s",
            *row[["model", "layer", "method", "definition", "tau", "auc", "accuracy", "note"]],
        )
    return table, "\n".join(summaries)
