"""The feature browser: each feature's strongest activations, kept while an SAE encodes the
eval rows, and the report pages that show features dense beside pruned."""

from prunescope.browser.top import (
    HISTOGRAM_EDGES,
    TopActivations,
    TopResult,
    histogram_counts,
    load_top_activations,
    save_top_activations,
)

__all__ = [
    "HISTOGRAM_EDGES",
    "TopActivations",
    "TopResult",
    "histogram_counts",
    "load_top_activations",
    "save_top_activations",
]
