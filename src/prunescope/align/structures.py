"""Study ALIGN's sparsity vocabulary: the patterns W1 is pruned to, and what a sparsity keeps.

Kept out of :mod:`prunescope.align.prune`, which imports scipy, because every Snakemake
call reads it to check the config.
"""

from __future__ import annotations

STRUCTURES = {"unstructured": None, "2of4": (2, 4)}
"""Pattern name (as in paths and the config) -> the N:M block it imposes, if any."""


def keep_count(d: int, sparsity: float) -> int:
    """Weights kept per row of W1: ``d - round(sparsity * d)``."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    keep = d - int(round(sparsity * d))
    if keep < 1:
        raise ValueError(f"sparsity {sparsity} leaves no weight in a row of {d}")
    return keep
