"""The paper's tables from per-artifact records (RQ1-RQ5, Table 1, Table B.1).

Inputs are plain records read from the workflow's artifacts (match rates,
SAE metrics, perplexities); outputs are pandas DataFrames. Every table says
how many items (features, seeds, pairs, prompts) each number rests on, and a
number that cannot be computed is NaN with a ``note`` saying why.

- ``definitions``: what each survival definition measures, shared keys, the guarded writer
- ``inputs``: keyed per-condition tables and dense SAE firing rates read from artifacts
- ``match_rates``: RQ1 seed stability and RQ2 decoder survival over seed pairs
- ``quintiles``: RQ4, Table 3 and the per-quintile table
- ``activation``: RQ2 and RQ4 under activation-level survival
- ``logistic``: RQ4's logistic fit of survival on firing rate and sparsity
- ``quality``: Table 1 (perplexity) and Table B.1 (SAE quality)
"""

from prunescope.analysis.activation import activation_survival_tables, activation_views
from prunescope.analysis.definitions import (
    DEFINITIONS,
    KEYS,
    condition_columns,
    decoder_pair_keys,
    match_keys,
    pair_definition,
    write_survival_table,
)
from prunescope.analysis.inputs import (
    dense_firing_rates,
    read_keyed_tables,
    reference_firing_rates,
)
from prunescope.analysis.logistic import (
    activation_logistic_frame,
    fit_logit_for,
    logistic_fit_table,
    logistic_fits,
    logistic_frame,
    logistic_rows,
)
from prunescope.analysis.match_rates import (
    METRICS,
    add_seed_floor,
    feature_survival_table,
    match_rate_records,
    rate_records,
    seed_stability_table,
    summarise_pairs,
    survival_records,
    survival_table,
)
from prunescope.analysis.quality import perplexity_table, sae_quality_records, sae_quality_table
from prunescope.analysis.quintiles import (
    QUINTILES,
    TABLE3_STATISTICS,
    activation_quintile_rows,
    add_quintile_floor,
    decoder_quintile_tables,
    floor_ratio,
    mean_over_pairs,
    pair_quintile_rows,
    quintile_rows,
    quintile_summary,
    quintile_survival_tables,
    summarise_quintile_long,
    summarise_quintile_pairs,
)

__all__ = [
    "DEFINITIONS",
    "KEYS",
    "METRICS",
    "QUINTILES",
    "TABLE3_STATISTICS",
    "activation_logistic_frame",
    "activation_quintile_rows",
    "activation_survival_tables",
    "activation_views",
    "add_quintile_floor",
    "add_seed_floor",
    "condition_columns",
    "decoder_pair_keys",
    "decoder_quintile_tables",
    "dense_firing_rates",
    "feature_survival_table",
    "fit_logit_for",
    "floor_ratio",
    "logistic_fit_table",
    "logistic_fits",
    "logistic_frame",
    "logistic_rows",
    "match_keys",
    "match_rate_records",
    "mean_over_pairs",
    "pair_definition",
    "pair_quintile_rows",
    "perplexity_table",
    "quintile_rows",
    "quintile_summary",
    "quintile_survival_tables",
    "rate_records",
    "read_keyed_tables",
    "reference_firing_rates",
    "sae_quality_records",
    "sae_quality_table",
    "seed_stability_table",
    "summarise_pairs",
    "summarise_quintile_long",
    "summarise_quintile_pairs",
    "survival_records",
    "survival_table",
    "write_survival_table",
]
