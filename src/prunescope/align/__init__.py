"""ALIGN study: feature-space alignment of pruned one-hidden-layer networks."""
