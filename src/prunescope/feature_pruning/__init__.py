"""Feature-aware pruning of language models, beyond both papers.

Study ALIGN prunes to preserve the features ``C1 = W1 C0`` where the feature basis ``C0``
is known. Here an SAE trained on the stream a projection reads estimates that basis:
:mod:`.norms` maps a stream direction through the block's norm to what the projection
sees, :mod:`.basis` measures an SAE's alive features that way (directions and energies),
:mod:`.hessian` turns them into the feature Hessian that the ``feature`` and
``feature_hybrid`` methods prune with (:mod:`prunescope.pruning.feature`), and
:mod:`.distortion` measures how far a pruned matrix moved in feature space and in weight
space; :mod:`.tables` sets those beside perplexity and survival.
"""
