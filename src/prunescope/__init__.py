"""prunescope: what weight pruning does to the features a network computes with."""

__version__ = "0.1.0"
