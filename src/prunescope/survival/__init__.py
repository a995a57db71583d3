"""Activation-level feature survival: does the pruned model still compute the dense features?

One fixed dictionary (the dense reference SAE, or any SAE with an encoder) encodes the
dense and the pruned model's activations of the same tokens, and each feature is compared
with itself across the two models: the Pearson correlation of its activations over the
tokens, the Jaccard overlap of its firing sets and the ratio of its mean activations. No
second SAE is trained, so no number here can come from a shared initialisation (README,
what "survives" means). The reverse view asks the opposite question: which
features of an SAE trained on the pruned model have no activation-correlated dense feature.

Eval sets run to millions of rows and dictionaries to tens of thousands of features, so
everything is accumulated over row chunks as per-feature moments that merge exactly
(Chan et al.), and the result does not depend on how the rows were chunked.

- ``encoders``: what survival needs of an SAE, and the checked encoding of row chunks
- ``moments``: per-feature moments, their exact merge, and the statistics built on them
- ``rows``: two row sources aligned and cut into chunks of the same rows
- ``activation``: one dictionary's survival from dense to pruned, beside the noise control
- ``reverse``: each pruned-SAE feature's best-correlated dense feature, and new features
"""

from prunescope.survival.activation import (
    activation_survival,
    matched_noise,
    perturbation_profile,
    survival_fractions,
    top_activations_of,
)
from prunescope.survival.encoders import (
    LatentEncoder,
    TopKLatents,
    as_latent_encoder,
    encode_rows,
)
from prunescope.survival.moments import (
    PRODUCT_BYTES,
    Moments,
    PairedMoments,
    add_cross_products,
    cross_correlation,
    feature_moments,
    firing_rate,
    jaccard,
    mean_ratio,
    merge_moments,
    merge_paired,
    paired_moments,
    pearson,
    row_best,
    survival_table,
)
from prunescope.survival.reverse import (
    CORRELATION_BYTES,
    CROSS_BYTES,
    ReverseMatch,
    best_dense_partners,
    dense_block_size,
    new_feature_table,
)
from prunescope.survival.rows import (
    CHUNK_ELEMENTS,
    default_batch_rows,
    iter_row_chunks,
    paired_chunks,
    row_count,
    row_pairs,
)

__all__ = [
    "CHUNK_ELEMENTS",
    "CORRELATION_BYTES",
    "CROSS_BYTES",
    "PRODUCT_BYTES",
    "LatentEncoder",
    "Moments",
    "PairedMoments",
    "ReverseMatch",
    "TopKLatents",
    "activation_survival",
    "top_activations_of",
    "add_cross_products",
    "as_latent_encoder",
    "best_dense_partners",
    "cross_correlation",
    "default_batch_rows",
    "dense_block_size",
    "encode_rows",
    "feature_moments",
    "firing_rate",
    "iter_row_chunks",
    "jaccard",
    "matched_noise",
    "mean_ratio",
    "merge_moments",
    "merge_paired",
    "new_feature_table",
    "paired_chunks",
    "paired_moments",
    "pearson",
    "perturbation_profile",
    "row_best",
    "row_count",
    "row_pairs",
    "survival_fractions",
    "survival_table",
]
