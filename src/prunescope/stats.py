"""Statistics for feature fragility by firing rate (paper sections 4.5-4.6).

Alive dense-SAE features are binned into firing-rate quintiles (Q1 = rarest), the
survival rate of each quintile is tabulated, and the trend is tested with an exact
permutation Spearman test over the five quintiles. A bootstrap CI on S(Q1) - S(Q5),
a feature-level Spearman and a logistic regression of survival on log firing rate
and sparsity complete the picture. Everything here is a pure function of arrays or
data frames, so each result can be checked against a brute-force version.

Undefined quantities (an empty quintile, a ratio over a zero survival rate, a
logistic fit on separated data) come back as NaN with a ``note`` saying why, never
as a silent 0.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from numpy.typing import ArrayLike
from scipy import optimize, stats
from sklearn.metrics import roc_auc_score
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    PerfectSeparationError,
    PerfectSeparationWarning,
)

N_QUINTILES = 5
DEAD = -1
"""Quintile label of features that are not alive (they belong to no quintile)."""
MAX_EXACT_N = 9
"""Largest n for which spearman_exact enumerates all n! permutations (9! = 362880)."""
RHO_TOLERANCE = 1e-9
"""Permutation statistics within this of |rho_obs| count as 'at least as extreme', so
float round-off never drops the observed permutation itself from the p-value."""
LOGIT_TERMS = ("const", "log_firing_rate", "sparsity")


def _vector(values: ArrayLike, name: str, dtype: type | None = None) -> np.ndarray:
    array = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}.")
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Arrays must have the same length, got {lengths}.")


def _bool_vector(values: ArrayLike, name: str) -> np.ndarray:
    array = _vector(values, name)
    if array.dtype != bool:
        if not np.all(np.isin(array, (0, 1))):
            raise ValueError(f"{name} must be boolean (or 0/1), got other values.")
        array = array.astype(bool)
    return array


def firing_rate_quintiles(
    firing_rate: ArrayLike, alive_mask: ArrayLike | None = None
) -> np.ndarray:
    """Label each alive feature with its firing-rate quintile 1..5 (1 = rarest), dead with -1.

    Assignment is by rank, not by value cut points: alive features are sorted by
    firing rate with a stable sort (ties keep feature-index order) and the i-th of n
    goes to quintile ``floor(5 * i / n) + 1``. Value quantiles would put a block of
    tied rates (common with rates counted over a finite corpus) wholly into one bin
    and make bin sizes depend on the ties; ranks give sizes that differ by at most 1
    and a deterministic split of ties. With fewer than 5 alive features some
    quintiles are empty, which survival_by_quintile reports as NaN.

    ``alive_mask`` defaults to ``firing_rate > 0``.
    """
    rate = _vector(firing_rate, "firing_rate", dtype=float)
    if not np.all(np.isfinite(rate)) or np.any(rate < 0):
        raise ValueError("firing_rate must be finite and non-negative.")
    if alive_mask is None:
        alive = rate > 0
    else:
        alive = _bool_vector(alive_mask, "alive_mask")
        _same_length(firing_rate=rate, alive_mask=alive)
    labels = np.full(rate.shape, DEAD, dtype=np.int64)
    alive_index = np.flatnonzero(alive)
    order = alive_index[np.argsort(rate[alive_index], kind="stable")]
    n_alive = len(order)
    labels[order] = np.arange(n_alive) * N_QUINTILES // max(n_alive, 1) + 1
    return labels


def survival_by_quintile(
    quintile: ArrayLike, survived: ArrayLike, firing_rate: ArrayLike
) -> pd.DataFrame:
    """Survival rate per firing-rate quintile: one row per Q1..Q5, dead features left out.

    Columns: quintile, n_features, n_survived, survival (fraction), mean_firing_rate,
    note. An empty quintile has survival and mean_firing_rate NaN and a note, so a
    downstream ratio or correlation cannot mistake "no features" for "none survived".
    """
    labels = _vector(quintile, "quintile").astype(np.int64)
    alive_survived = _bool_vector(survived, "survived")
    rate = _vector(firing_rate, "firing_rate", dtype=float)
    _same_length(quintile=labels, survived=alive_survived, firing_rate=rate)
    valid = np.isin(labels, (DEAD, *range(1, N_QUINTILES + 1)))
    if not np.all(valid):
        raise ValueError(
            f"quintile labels must be -1 or 1..{N_QUINTILES}, got {labels[~valid][0]}."
        )
    rows = []
    for q in range(1, N_QUINTILES + 1):
        members = labels == q
        n_features = int(members.sum())
        n_survived = int(alive_survived[members].sum())
        empty = n_features == 0
        rows.append(
            {
                "quintile": q,
                "n_features": n_features,
                "n_survived": n_survived,
                "survival": math.nan if empty else n_survived / n_features,
                "mean_firing_rate": math.nan if empty else float(rate[members].mean()),
                "note": f"Q{q} has no alive features; survival undefined" if empty else "",
            }
        )
    return pd.DataFrame(rows)


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    ranks = stats.rankdata(values)
    return ranks - ranks.mean()


def spearman_exact(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Spearman rho and its exact two-sided permutation p-value for small n.

    With n = 5 quintiles the asymptotic t approximation is meaningless, so the null
    distribution is enumerated: rho is recomputed for all n! orderings of y's ranks
    and p = P(|rho_perm| >= |rho_obs|) (within RHO_TOLERANCE). The observed ordering
    is among them, so p >= 2/n! for |rho| = 1 (n = 5: 2/120). Ties get average ranks,
    as in scipy.stats.spearmanr.

    NaN anywhere gives (nan, nan): a NaN is an empty quintile, and dropping it would
    silently test a different n against a different null distribution. A constant x or
    y also gives (nan, nan) because rho is undefined.
    """
    xs = _vector(x, "x", dtype=float)
    ys = _vector(y, "y", dtype=float)
    _same_length(x=xs, y=ys)
    n = len(xs)
    if not 2 <= n <= MAX_EXACT_N:
        raise ValueError(f"spearman_exact needs 2 <= n <= {MAX_EXACT_N} points, got {n}.")
    if np.isnan(xs).any() or np.isnan(ys).any():
        return math.nan, math.nan
    rx, ry = _centred_ranks(xs), _centred_ranks(ys)
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if denominator == 0.0:
        return math.nan, math.nan
    rho = float(rx @ ry) / denominator
    permuted = ry[np.array(list(itertools.permutations(range(n))))]
    null_rho = permuted @ rx / denominator
    p = float(np.mean(np.abs(null_rho) >= abs(rho) - RHO_TOLERANCE))
    return rho, p


def bootstrap_q1_minus_q5(
    quintile: ArrayLike,
    survived: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict:
    """S(Q1) - S(Q5) with a stratified percentile-bootstrap confidence interval.

    Features are resampled with replacement within Q1 and within Q5 separately, so each
    replicate keeps the quintile sizes. The mean of n draws with replacement from a
    boolean sample with survival fraction s is exactly Binomial(n, s) / n, so replicates
    are drawn that way: the same distribution as index resampling, at O(n_boot) cost
    and memory whatever the dictionary size. Deterministic given ``seed``.

    Returns estimate, low, high, n_boot, ci, seed and note; estimate/low/high are NaN
    with a note when Q1 or Q5 is empty.
    """
    labels = _vector(quintile, "quintile").astype(np.int64)
    alive_survived = _bool_vector(survived, "survived")
    _same_length(quintile=labels, survived=alive_survived)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}.")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci}.")
    result = {"estimate": math.nan, "low": math.nan, "high": math.nan}
    result |= {"n_boot": int(n_boot), "ci": float(ci), "seed": int(seed), "note": ""}
    groups = {q: alive_survived[labels == q] for q in (1, N_QUINTILES)}
    empty = [f"Q{q}" for q, group in groups.items() if len(group) == 0]
    if empty:
        result["note"] = f"{' and '.join(empty)} has no alive features; difference undefined"
        return result
    rng = np.random.default_rng(seed)
    replicates = np.zeros(n_boot)
    for sign, group in zip((1.0, -1.0), groups.values(), strict=True):
        n = len(group)
        replicates += sign * rng.binomial(n, group.mean(), size=n_boot) / n
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    result["estimate"] = float(groups[1].mean() - groups[N_QUINTILES].mean())
    result["low"], result["high"] = float(low), float(high)
    return result


def feature_spearman(
    firing_rate: ArrayLike, best_cosine: ArrayLike, alive_mask: ArrayLike | None = None
) -> tuple[float, float]:
    """Feature-level Spearman rho (scipy, asymptotic p) between firing rate and best cosine.

    Only alive features (``firing_rate > 0`` unless ``alive_mask`` is given) enter: a
    dead feature has no meaningful rate and would add a block of ties at zero. Fewer
    than 3 alive features, or a constant column, give (nan, nan).
    """
    rate = _vector(firing_rate, "firing_rate", dtype=float)
    cosine = _vector(best_cosine, "best_cosine", dtype=float)
    _same_length(firing_rate=rate, best_cosine=cosine)
    alive = rate > 0 if alive_mask is None else _bool_vector(alive_mask, "alive_mask")
    _same_length(firing_rate=rate, alive_mask=alive)
    rate, cosine = rate[alive], cosine[alive]
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(cosine))):
        raise ValueError("firing_rate and best_cosine must be finite for alive features.")
    if len(rate) < 3 or np.ptp(rate) == 0 or np.ptp(cosine) == 0:
        return math.nan, math.nan
    result = stats.spearmanr(rate, cosine)
    return float(result.statistic), float(result.pvalue)


def survival_target(survival_rates: ArrayLike, threshold: float = 0.5) -> np.ndarray:
    """Binary logistic target: a feature "survives" if its survival rate exceeds threshold.

    ``survival_rates`` is, per feature, the fraction of pruned seeds in which it
    survives at tau (pass ``per_seed_survived.mean(axis=0)``). With one seed the rates
    are 0 or 1, so the target is simply survival at tau.
    """
    rates = _vector(survival_rates, "survival_rates", dtype=float)
    if not np.all(np.isfinite(rates)) or np.any((rates < 0) | (rates > 1)):
        raise ValueError("survival_rates must be finite fractions in [0, 1].")
    return rates > threshold


def _is_separated(design: np.ndarray, outcome: np.ndarray) -> bool:
    """Whether the classes are completely or quasi-completely separated (no finite MLE).

    Linear program of Konis (2007): maximise the summed signed margins s_i x_i'b subject
    to every margin >= 0 and |b| <= 1. Only b = 0 is feasible-and-optimal when the MLE
    exists; a positive optimum is a direction along which the likelihood keeps rising.
    Columns are standardised first (separation is invariant to that when a constant is
    present) so the tolerance means the same thing for every scale of predictor.
    """
    scaled = design.astype(float).copy()
    spread = scaled.std(axis=0)
    varying = spread > 0
    scaled[:, varying] = (scaled[:, varying] - scaled[:, varying].mean(axis=0)) / spread[varying]
    signed = np.where(outcome, 1.0, -1.0)[:, None] * scaled
    solution = optimize.linprog(
        c=-signed.sum(axis=0),
        A_ub=-signed,
        b_ub=np.zeros(len(signed)),
        bounds=[(-1.0, 1.0)] * design.shape[1],
        method="highs",
    )
    return bool(solution.status == 0 and -solution.fun > 1e-6)


def _nan_fit(base: dict, note: str) -> dict:
    nan_term = {"coef": math.nan, "se": math.nan, "z": math.nan, "p": math.nan}
    return base | {
        "coefficients": {term: dict(nan_term) for term in LOGIT_TERMS},
        "auc": math.nan,
        "accuracy": math.nan,
        "converged": False,
        "summary": "",
        "note": note,
    }


def fit_survival_logit(df: pd.DataFrame, tau: float) -> dict:
    """Logistic regression of survival on const + log(firing_rate) + sparsity (section 4.6).

    ``df`` has one row per (feature, condition) with columns firing_rate (> 0), sparsity
    and survived (bool, computed at ``tau`` by the caller; ``tau`` is only recorded).
    Returns tau, n, n_survived, coefficients ({term: {coef, se, z, p}} for const,
    log_firing_rate, sparsity), auc (roc_auc_score of the fitted probabilities),
    accuracy (predicted probability > 0.5 against the target), converged, the statsmodels
    summary text and a note.

    A single outcome class or (quasi-)separated data has no finite MLE: every number is
    NaN and the note says which. statsmodels 0.14+ only warns on separation (and does not
    always detect it), so separation is tested directly with a linear program first. A
    single sparsity level makes sparsity collinear with the constant; then the term is
    left out of the fit, reported as NaN, and the note says so.
    """
    missing = [c for c in ("firing_rate", "sparsity", "survived") if c not in df.columns]
    if missing:
        raise ValueError(f"fit_survival_logit: data frame lacks column(s) {missing}.")
    rate = df["firing_rate"].to_numpy(dtype=float)
    sparsity = df["sparsity"].to_numpy(dtype=float)
    outcome = _bool_vector(df["survived"].to_numpy(), "survived")
    if not (np.all(np.isfinite(rate)) and np.all(rate > 0)):
        raise ValueError("fit_survival_logit: firing_rate must be finite and > 0 (alive features).")
    if not np.all(np.isfinite(sparsity)):
        raise ValueError("fit_survival_logit: sparsity must be finite.")
    n, n_survived = len(outcome), int(outcome.sum())
    if n == 0:
        raise ValueError("fit_survival_logit: data frame has no rows.")
    base = {"tau": float(tau), "n": n, "n_survived": n_survived}
    if n_survived in (0, n):
        return _nan_fit(base, f"all {n} rows have survived={n_survived == n}; no finite fit")
    if np.ptp(rate) == 0:
        return _nan_fit(base, "firing_rate is constant; its coefficient is not identified")

    columns = {"const": np.ones(n), "log_firing_rate": np.log(rate), "sparsity": sparsity}
    notes = []
    if np.ptp(sparsity) == 0:
        del columns["sparsity"]
        notes.append("single sparsity level; sparsity term left out (collinear with const)")
    design = pd.DataFrame(columns, index=df.index)
    if _is_separated(design.to_numpy(), outcome):
        return _nan_fit(base, "outcome is (quasi-)perfectly separated by the predictors")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            result = sm.Logit(outcome.astype(float), design).fit(disp=0, maxiter=100)
        except (PerfectSeparationError, PerfectSeparationWarning, np.linalg.LinAlgError) as error:
            return _nan_fit(base, f"statsmodels could not fit: {error}")
    converged = bool(result.mle_retvals.get("converged", False))
    if not converged or any(issubclass(w.category, ConvergenceWarning) for w in caught):
        converged = False
        notes.append("maximum likelihood did not converge; treat estimates with caution")
    coefficients = {}
    for term in LOGIT_TERMS:
        if term in design.columns:
            values = (result.params, result.bse, result.tvalues, result.pvalues)
            coef, se, z, p = (float(v[term]) for v in values)
        else:
            coef = se = z = p = math.nan
        coefficients[term] = {"coef": coef, "se": se, "z": z, "p": p}
    probability = np.asarray(result.predict(design), dtype=float)
    return base | {
        "coefficients": coefficients,
        "auc": float(roc_auc_score(outcome, probability)),
        "accuracy": float(np.mean((probability > 0.5) == outcome)),
        "converged": converged,
        "summary": timeless_summary(result.summary().as_text()),
        "note": "; ".join(notes),
    }


def timeless_summary(text: str) -> str:
    """A statsmodels summary without the date and time it was printed at, blanked to the
    same width so the columns stay aligned: the same data give the same file."""

    def blank(match: re.Match) -> str:
        return match.group(1) + " " * len(match.group(2)) + match.group(3)

    return re.sub(r"^((?:Date|Time):\s+)(\S.*?)(\s{3,}\S)", blank, text, flags=re.M)


def q1_q5_ratio(s_q1: float, s_q5: float) -> tuple[float, str]:
    """Survival advantage S(Q1) / S(Q5) (paper Table 3) and a note when it is undefined.

    S(Q5) = 0 gives NaN rather than inf: a table cell of "inf x" would hide whether Q1
    survived at all, and the difference S(Q1) - S(Q5) is the reportable quantity there.
    """
    q1, q5 = float(s_q1), float(s_q5)
    if math.isnan(q1) or math.isnan(q5):
        return math.nan, "a quintile survival rate is NaN (empty quintile); ratio undefined"
    if q5 == 0.0:
        return math.nan, "S(Q5) is 0; ratio undefined"
    return q1 / q5, ""
