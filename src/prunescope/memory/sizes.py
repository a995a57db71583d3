"""The units the estimates count in and the sizes the library fixes where the config does not
reach (tests/test_memory.py checks each against the library)."""

GB = 10**9
MB = 10**6
"""Snakemake's ``mem_mb`` unit (``mem="16G"`` is 16,000 of them); SLURM reads ``--mem`` in
MiB, a little more, so a job gets at least what it asks for."""
RUNTIME_BYTES = 650 * 10**6
"""Python, torch, transformers, h5py and the model code: 0.3-0.45 GB resident before a job
allocates anything; the rest for what first calls load and what glibc keeps of freed blocks
under its 32 MB mmap threshold (up to ~0.15 GB, measured)."""
FLOAT32 = 4
FLOAT64 = 8
INT64 = 8
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
TOKEN_BYTES = 80
"""A tokenised document as Python ints (28 B each) in per-document lists and in the flat
list ``corpus.token_stream`` joins them into, before they become an int64 tensor."""

# Sizes the library fixes where the config does not reach (tests check them against it).
SAE_BUFFER_ROWS = 131_072  # sae.SAEConfig.buffer_rows
SAE_EVAL_ROWS = 8192  # sae.SAEConfig.eval_batch_size
SAE_RESAMPLE_CHUNK = 4096  # sae.RESAMPLE_CHUNK
RESAMPLE_UNTIL = 0.8  # sae.RESAMPLE_UNTIL
CACHE_CHUNK_ROWS = 2048  # activations.DEFAULT_CHUNK_ROWS
MATCH_BLOCK_BYTES = 256 * 2**20  # matching.BLOCK_BYTES
SURVIVAL_CHUNK_ELEMENTS = 2**24  # survival.CHUNK_ELEMENTS
SURVIVAL_CROSS_BYTES = 4 * 2**30  # survival.CROSS_BYTES
SURVIVAL_PRODUCT_BYTES = 256 * 2**20  # survival.PRODUCT_BYTES
SURVIVAL_CORRELATION_BYTES = 64 * 2**20  # survival.CORRELATION_BYTES
MATCH_CANDIDATES_PER_FEATURE = 16
"""Pairs above the lowest tau kept per feature of A for the greedy matching: an assumption
(trained dictionaries hold a few near-duplicates per feature, random ones none)."""
HESSIAN_CHUNK = 2048  # align.hessian.w1_hessian's chunk
ENUMERATION_BATCH = 4096  # align.mip._ENUMERATION_BATCH
ALIGN_EVAL_ROWS = 8192  # align.net.evaluate_nets's batch_size
DIGITS_SAMPLES = 1797  # sklearn's Digits
DIGITS_PIXELS = 64
PERPLEXITY_TOKENS_UNBOUNDED = 2_000_000
"""Tokens assumed for ``perplexity.max_tokens: null`` (the whole eval split; WikiText-2's
test split is 0.3 M)."""
