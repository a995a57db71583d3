"""Study LM's dictionary jobs: training an SAE, matching two dictionaries, and the
activation survival (forward and reverse) that encodes with them."""

from __future__ import annotations

import math

from prunescope.memory.estimate import Estimate, Term, peak
from prunescope.memory.sizes import (
    FLOAT32,
    FLOAT64,
    INT64,
    MATCH_BLOCK_BYTES,
    MATCH_CANDIDATES_PER_FEATURE,
    RESAMPLE_UNTIL,
    SAE_BUFFER_ROWS,
    SAE_EVAL_ROWS,
    SAE_RESAMPLE_CHUNK,
    SURVIVAL_CHUNK_ELEMENTS,
    SURVIVAL_CORRELATION_BYTES,
    SURVIVAL_CROSS_BYTES,
    SURVIVAL_PRODUCT_BYTES,
    TOKEN_BYTES,
)


def train_sae_memory(config: dict, model: str, d_model: int) -> Estimate:
    """``sae.train_sae``.

    Held throughout: encoder and decoder weights, their gradients and Adam's two moments
    (four float32 copies of 2 x d_sae x d_model), and the shuffle buffer (up to
    ``SAE_BUFFER_ROWS`` rows in four copies: the blocks read, joined, the leftover prepended,
    and shuffled). On top, the largest of: a step's (batch, d_sae) encoder pre-activations and
    the TopK's group maxima; a new gradient while the old one is held and the decoder
    gradient's projection (two more matrices); a resampling (a pool of up to 16 batches and
    the pre-activations of 4,096 inputs at a time (``sae.RESAMPLE_CHUNK``), old and new, and
    per dead latent a direction and its encoder row, with every latent possibly dead); the
    evaluation's (8192, d_sae) pre-activations.
    """
    sae = config["sae"]
    expansion, batch, k = sae["expansion"], sae["batch_size"], sae["k"]
    d_sae = expansion * d_model
    matrix = d_sae * d_model * FLOAT32
    size_keys = ("sae.expansion",)
    what = f"d_sae = sae.expansion {expansion:,} x d_model {d_model:,}"
    train_rows = config["activations"]["train_tokens"]
    buffer_rows = min(SAE_BUFFER_ROWS + batch, train_rows)
    held = [
        Term(
            f"weights, gradients and Adam moments of {what}",
            4 * (2 * matrix + d_sae * FLOAT32) + d_sae * (INT64 + FLOAT32),
            size_keys,
        ),
        Term(
            f"the shuffle buffer ({buffer_rows:,} rows x {d_model:,}, four copies)",
            4 * buffer_rows * d_model * FLOAT32,
            ("activations.train_tokens",) if buffer_rows == train_rows else (),
        ),
        # metrics.json's firing rates go through a Python list of floats
        Term("per-latent firing rates as Python floats", d_sae * TOKEN_BYTES, size_keys),
    ]
    step = [
        Term(
            f"encoder pre-activations of sae.batch_size {batch:,} x {what}",
            batch * d_sae * FLOAT32 * 5 // 4 + 6 * batch * d_model * FLOAT32,
            ("sae.batch_size", *size_keys),
        )
    ]
    gradients = [Term(f"two more gradient-sized matrices of {what}", 2 * matrix, size_keys)]
    eval_rows = min(SAE_EVAL_ROWS, config["activations"]["eval_tokens"])
    evaluating = [
        Term(
            f"evaluation pre-activations of {eval_rows:,} rows x {what}",
            eval_rows * d_sae * FLOAT32 * 5 // 4 + 6 * eval_rows * d_model * FLOAT32,
            size_keys,
        )
    ]
    phases = [step, gradients, evaluating]
    if 0 < sae["resample_every"] <= RESAMPLE_UNTIL * sae["steps"]:
        pool = min(16, max(1, math.ceil(4 * d_sae / batch))) * batch
        split = max(min(SAE_RESAMPLE_CHUNK, pool), min(SAE_RESAMPLE_CHUNK, d_sae))
        phases.append(
            [
                Term("the resampling pool", 4 * pool * d_model * FLOAT32, ("sae.batch_size",)),
                Term(
                    f"pre-activations of {split:,} resampling inputs x d_sae {d_sae:,}",
                    2 * split * d_sae * FLOAT32 + d_sae * (2 * d_model + 3 * k) * FLOAT32,
                    ("sae.expansion",),
                ),
            ]
        )
    return peak("train_sae", f"model {model}", held, *phases)


def match_dictionaries_memory(config: dict, model: str, d_model: int) -> Estimate:
    """``matching.match_dictionaries`` as the script runs it: both decoders and their unit-norm
    copies, one float32 block of cosines with its threshold masks, and the candidate pairs
    (``MATCH_CANDIDATES_PER_FEATURE`` per feature) through the greedy matching's sorts; loading
    the second SAE holds its file's tensors and a fresh module beside the first decoder."""
    d_sae = config["sae"]["expansion"] * d_model
    matrix = d_sae * d_model * FLOAT32
    size_keys = ("sae.expansion",)
    rows = config["analysis"].get("match_block_rows") or max(
        1, min(d_sae, MATCH_BLOCK_BYTES // (FLOAT32 * d_sae))
    )
    rows = min(rows, d_sae)
    block_keys = ("analysis.match_block_rows", "sae.expansion")
    matching = [
        Term(
            f"two decoders of d_sae {d_sae:,} x d_model {d_model:,} and unit-norm copies",
            4 * matrix,
            size_keys,
        ),
        Term(
            f"a block of {rows:,} x {d_sae:,} cosines with its masks",
            rows * d_sae * (FLOAT32 + 2),
            block_keys,
        ),
        Term(
            "candidate pairs through the greedy matching",
            MATCH_CANDIDATES_PER_FEATURE * d_sae * 52 + 16 * d_sae * INT64,
            size_keys,
        ),
    ]
    loading = [
        Term(
            "the first decoder beside the second SAE's file and module",
            5 * matrix + matrix // 4,
            size_keys,
        )
    ]
    return peak("match_dictionaries", f"model {model}", [], loading, matching)


def _sae_terms(d_sae: int, d_model: int, what: str) -> tuple[Term, Term]:
    """A loaded SAE (encoder and decoder of d_sae x d_model, biases), and what loading it
    holds beside the module: the file's tensors and a finiteness mask of the largest."""
    matrix = d_sae * d_model * FLOAT32
    held = Term(
        f"{what} (2 x d_sae {d_sae:,} x d_model {d_model:,})",
        2 * matrix + d_sae * FLOAT32,
        ("sae.expansion",),
    )
    loading = Term(f"{what}'s file read beside its module", 2 * matrix + matrix // 4)
    return held, loading


def _latent_chunk(config: dict, d_sae: int) -> tuple[int, int, tuple[str, ...]]:
    """(rows, float32 bytes, keys that shrink it) of one chunk of latents as ``survival``
    encodes them: ``SURVIVAL_CHUNK_ELEMENTS // d_sae`` rows (64 MiB whatever d_sae), or the
    whole eval split when it is shorter (``activations.eval_tokens`` bounds its rows)."""
    full = max(1, SURVIVAL_CHUNK_ELEMENTS // d_sae)
    rows = min(full, config["activations"]["eval_tokens"])
    if rows < full:
        keys: tuple[str, ...] = ("activations.eval_tokens", "sae.expansion")
    else:
        keys = ("sae.expansion",) if full == 1 else ()  # else the library's fixed size
    return rows, rows * d_sae * FLOAT32, keys


def activation_survival_memory(config: dict, model: str, d_model: int) -> Estimate:
    """``survival.activation_survival`` with the matched-noise control, as the script runs it.

    Held throughout: the dense reference SAE. Per chunk of rows (``_latent_chunk``) the
    dense, pruned and noise latents (float32); ``paired_moments`` of the dense and the
    noise latents adds float64 centred copies of both and, at its worst, the firing masks
    of both and their conjunction with the int64 copy its count sums (a float64 product per
    ``vecdot`` is smaller), the freed masks (bool, under glibc's 32 MB mmap threshold)
    leaving about 1.5 chunks' worth in the heap (measured). ``matched_noise`` holds two
    latent chunks while it forms four float64 copies of the rows. Loading the SAE holds
    its file's tensors beside the module.
    """
    expansion = config["sae"]["expansion"]
    d_sae = expansion * d_model
    rows, latent, chunk_keys = _latent_chunk(config, d_sae)
    sae, loading = _sae_terms(d_sae, d_model, "the dense reference SAE")
    what = f"{rows:,} rows x d_sae {d_sae:,}"
    comparing = [
        Term(f"dense, pruned and noise latents of {what} (float32)", 3 * latent, chunk_keys),
        Term(f"float64 centred copies of two latent chunks of {what}", 4 * latent, chunk_keys),
        Term(
            "their firing masks, the masks' int64 counts and what the heap keeps of them",
            latent * 2 + latent * 3 // 4 + latent * 3 // 2,
            chunk_keys,
        ),
        Term(
            f"dense, pruned and noise rows of {rows:,} x {d_model:,}", 3 * rows * d_model * FLOAT32
        ),
    ]
    noising = [
        Term(f"dense and pruned latents of {what} (float32)", 2 * latent, chunk_keys),
        Term(
            f"float64 noise and differences of {rows:,} rows x {d_model:,}",
            rows * d_model * (2 * FLOAT32 + 4 * FLOAT64),
        ),
    ]
    return peak("activation_survival", f"model {model}", [sae], [loading], comparing, noising)


def reverse_survival_memory(config: dict, model: str, d_model: int) -> Estimate:
    """``survival.best_dense_partners`` as the script runs it: a condition's SAE and the
    dense reference SAE (both d_sae wide), both loaded.

    The float64 cross-moment accumulator (d_sae, block): block = all d_sae dense features
    when it fits ``SURVIVAL_CROSS_BYTES``, else as many as do (the rows are then read once
    per block). On top of it, the worst of: a chunk's two latent matrices with a float64
    centred copy of one and its float64 product (``feature_moments``) or its firing mask's
    int64 count; the two latent matrices and their shifted copies with one float32
    product block (``SURVIVAL_PRODUCT_BYTES``) and the float64 copy the in-place add into
    the accumulator makes of it on a CPU; four float64 blocks of correlations.
    """
    expansion = config["sae"]["expansion"]
    d_sae = expansion * d_model
    size_keys = ("sae.expansion",)
    rows, latent, chunk_keys = _latent_chunk(config, d_sae)
    block = max(1, min(d_sae, SURVIVAL_CROSS_BYTES // (FLOAT64 * d_sae)))
    passes = math.ceil(d_sae / block)
    cross = Term(
        f"the float64 cross moments of d_sae {d_sae:,} x {block:,}"
        + (f" ({passes} passes over the rows)" if passes > 1 else ""),
        d_sae * block * FLOAT64,
        size_keys,
    )
    pruned_sae, _ = _sae_terms(d_sae, d_model, "the condition's SAE")
    dense_sae, loading = _sae_terms(d_sae, d_model, "the dense reference SAE")
    what = f"{rows:,} rows x d_sae {d_sae:,}"
    product_rows = min(d_sae, max(1, SURVIVAL_PRODUCT_BYTES // (FLOAT32 * block)))
    correlation_rows = min(d_sae, max(1, SURVIVAL_CORRELATION_BYTES // (FLOAT64 * block)))
    moments = [
        cross,
        Term(f"both sides' latents of {what} (float32)", 2 * latent, chunk_keys),
        Term(
            "a float64 centred copy of one, its product or its firing mask's int64 count",
            4 * latent + latent // 4,
            chunk_keys,
        ),
    ]
    accumulating = [
        cross,
        Term(f"both sides' latents of {what} and shifted copies", 4 * latent, chunk_keys),
        Term(
            f"a {product_rows:,} x {block:,} float32 product block and its float64 copy",
            product_rows * block * (FLOAT32 + FLOAT64),
            size_keys,
        ),
    ]
    correlating = [
        cross,
        Term(
            f"four float64 blocks of {correlation_rows:,} x {block:,} correlations",
            4 * correlation_rows * block * FLOAT64,
            size_keys,
        ),
    ]
    return peak(
        "reverse_survival",
        f"model {model}",
        [pruned_sae, dense_sae],
        [loading],
        moments,
        accumulating,
        correlating,
    )
