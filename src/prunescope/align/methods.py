"""Study ALIGN's method names that say which feature basis a method prunes against.

MIP and FLO use the true embedding C0 (the oracle). ``mip_<estimator>`` and
``flo_<estimator>`` run the same MIP and FLO with a basis estimated from the embedded
inputs x' = C0·x alone (``align.basis``): a sparse autoencoder's dictionary (``sae``) or
FastICA's mixing matrix (``ica``).

Kept apart from :mod:`prunescope.align.prune` so that the rule files, which read it to
plan the grid, need no scipy.
"""

from __future__ import annotations

ESTIMATORS = ("sae", "ica")
"""Ways of estimating a feature basis without C0, as in method names and paths."""
BASIS_BASES = ("mip", "flo")
"""The oracle methods that have an estimated-basis twin."""
BASIS_METHODS = tuple(f"{base}_{estimator}" for estimator in ESTIMATORS for base in BASIS_BASES)
"""``mip_sae``, ``flo_sae``, ``mip_ica``, ``flo_ica``."""


def split_method(method: str) -> tuple[str, str | None]:
    """``("mip", "sae")`` for ``"mip_sae"``; ``(method, None)`` for a method that prunes
    against C0 or needs no basis."""
    if method in BASIS_METHODS:
        base, estimator = method.split("_")
        return base, estimator
    return method, None


def estimators_of(methods) -> list[str]:
    """The estimators ``methods`` need, in the order of :data:`ESTIMATORS`."""
    needed = {split_method(m)[1] for m in methods}
    return [e for e in ESTIMATORS if e in needed]
