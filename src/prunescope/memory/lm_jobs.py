"""Study LM's model jobs: training a model here, pruning it, its perplexity, capturing
its activations; and the per-block activation sizes they share."""

from __future__ import annotations

import math

from prunescope.conditions import FEATURE_AWARE, parse_method
from prunescope.memory.estimate import Estimate, Term, peak
from prunescope.memory.shapes import ModelShape
from prunescope.memory.sizes import (
    CACHE_CHUNK_ROWS,
    DTYPE_BYTES,
    FLOAT32,
    FLOAT64,
    INT64,
    PERPLEXITY_TOKENS_UNBOUNDED,
    TOKEN_BYTES,
)


def _forward_bytes(shape: ModelShape, batch: int, context: int, dtype_bytes: int) -> int:
    """Activations of one decoder block's forward in inference: the residual stream and norms
    (8 x hidden), queries/keys/values with their rotary copies (4 x attention widths), the MLP's
    gate, up, activation and product (4 x intermediate), and float32 attention scores,
    probabilities and their cast (3 x heads x context^2; eager attention forms them whole)."""
    return _block_bytes(shape, batch, context, dtype_bytes, hidden=8, intermediate=4)


def _saved_for_backward(shape: ModelShape, batch: int, context: int) -> int:
    """float32 tensors one block keeps for backward when trained: its inputs, norms, q/k/v and
    their rotary halves (10 x hidden with the above), the MLP's gate, up, activation and
    product (5 x intermediate), and the attention scores, probabilities and dropout mask."""
    return _block_bytes(shape, batch, context, FLOAT32, hidden=10, intermediate=5)


def _block_bytes(
    shape: ModelShape, batch: int, context: int, dtype_bytes: int, hidden: int, intermediate: int
) -> int:
    """``hidden`` and ``intermediate`` copies of those widths per token, q/k/v with their
    rotary copies, and three float32 (heads, context, context) attention matrices."""
    widths = (
        hidden * shape.hidden_size
        + 4 * (shape.attention_width + 2 * shape.kv_width)
        + intermediate * shape.intermediate_size
    )
    scores = 3 * batch * shape.num_attention_heads * context * context * FLOAT32
    return batch * context * widths * dtype_bytes + scores


def _weights_term(config: dict, model: str, shape: ModelShape) -> Term:
    """The weights once. ``from_pretrained`` maps the checkpoint and the weights read from it
    stay file pages; a weight changed in place (pruning) gets its own copy, but the file pages
    it leaves are clean page cache that the kernel reclaims before it runs out, so they are
    not counted (the resident set can show both)."""
    dtype = config["models"][model]["dtype"]
    keys = (f"models.{model}.dtype", *_width_keys(model, shape))
    return Term(
        f"the {shape.parameters / 1e6:,.0f} M weights in {dtype}",
        shape.parameters * DTYPE_BYTES[dtype],
        keys,
    )


def _width_keys(model: str, shape: ModelShape) -> tuple[str, ...]:
    if shape.key.endswith(".architecture"):
        return (f"{shape.key}.hidden_size", f"{shape.key}.num_hidden_layers")
    return (f"models.{model}.name",)


def _tokens_term(n_tokens: int, key: str) -> Term:
    return Term(f"{n_tokens:,} tokenised tokens", n_tokens * (TOKEN_BYTES + INT64), (key,))


# --------------------------------------------------------------------------- Study LM


def train_local_model_memory(config: dict, model: str) -> Estimate:
    """``tinylm.train_lm``: float32 weights, gradients and AdamW's two moments; every block's
    activations saved for backward; the logits with their log-softmax and gradient."""
    shape = ModelShape.from_local(config, model)
    training = config["models"][model]["training"]
    key = f"models.{model}.training"
    batch, context = training["batch_size"], training["context"]
    n = shape.parameters
    arch = (f"{shape.key}.hidden_size", f"{shape.key}.num_hidden_layers")
    held = [
        Term(
            f"{n / 1e6:,.1f} M float32 weights, gradients and two AdamW moments",
            4 * n * FLOAT32,
            arch,
        ),
        _tokens_term(training["train_tokens"] + training["eval_tokens"], f"{key}.train_tokens"),
    ]
    acts = (shape.num_hidden_layers + 1) * _saved_for_backward(shape, batch, context)
    logits = batch * context * shape.vocab_size * FLOAT32
    step = [
        Term(
            f"activations of {shape.num_hidden_layers} blocks for batch {batch} x context "
            f"{context}",
            acts,
            (f"{key}.batch_size", f"{key}.context"),
        ),
        Term(
            f"logits, log-softmax and their gradient ({batch} x {context} x vocab "
            f"{shape.vocab_size:,})",
            4 * logits,
            (f"{key}.batch_size", f"models.{model}.tokenizer.vocab_size"),
        ),
    ]
    saving = [Term("a copy of the weights while saving", n * FLOAT32, arch)]
    return peak("train_local_model", f"model {model}", held, step, saving)


def prune_model_memory(config: dict, model: str, method: str, shape: ModelShape) -> Estimate:
    """``pruning.prune_model`` as the script runs it: load, prune, save.

    Magnitude holds a keep-mask per weight and a few float32 copies of the largest matrix.
    Wanda and SparseGPT keep every calibration window's hidden states (twice while one block's
    output replaces its input), the per-batch call arguments (attention masks), and one block's
    forward activations; SparseGPT also the float32 Hessians of one block's seven linears and,
    while pruning the widest, its Cholesky factors and two float32 copies of its weight.
    """
    base, _ = parse_method(method)
    spec = config["models"][model]
    weights = _weights_term(config, model, shape)
    s = DTYPE_BYTES[spec["dtype"]]
    widest_rows, widest_cols = max(shape.linear_shapes(), key=lambda rc: rc[0] * rc[1])
    largest = widest_rows * widest_cols
    # safetensors serialises a shard (the whole model, below 50 GB) in memory before writing
    phases: list[list[Term]] = [[Term("the weights serialised while saving", weights.bytes)]]
    if base == "magnitude":
        phases.append(
            [
                Term("a keep-mask per prunable weight", shape.prunable_parameters, ()),
                Term("float32 copies of the largest matrix for the radix select", 4 * largest * 4),
            ]
        )
    else:
        calib = config["pruning"]["calibration"]
        ckey = "pruning.calibration"
        n_windows = max(calib["n_tokens"] // calib["context"], 1)
        batch = min(calib["batch_size"], n_windows)
        context = calib["context"]
        d = shape.hidden_size
        stored = n_windows * context * d * s
        masks = n_windows * context * (context + 2 * shape.head_dim) * s
        calibrating = [
            _tokens_term(n_windows * context, f"{ckey}.n_tokens"),
            Term(
                f"{n_windows:,} calibration windows' hidden states, twice",
                2 * stored,
                (f"{ckey}.n_tokens",),
            ),
            Term(
                "their attention masks and rotary embeddings",
                masks,
                (f"{ckey}.context", f"{ckey}.n_tokens"),
            ),
            Term(
                f"one block's forward on a batch of {batch} x {context}",
                _forward_bytes(shape, batch, context, s),
                (f"{ckey}.batch_size", f"{ckey}.context"),
            ),
        ]
        if base in {"sparsegpt", *FEATURE_AWARE}:
            hessians = sum(cols * cols for _, cols in shape.linear_shapes()) * FLOAT32
            calibrating += [
                Term(
                    "one block's float32 Hessians (in_features^2 per linear)",
                    hessians,
                    _width_keys(model, shape),
                ),
                Term(
                    "Cholesky factors and weight copies of the widest linear",
                    (3 * widest_cols * widest_cols + 2 * largest) * FLOAT32,
                    _width_keys(model, shape),
                ),
            ]
        if base in FEATURE_AWARE:
            calibrating.append(_feature_basis_term(config, shape))
        phases.append(calibrating)
    return peak("prune_model", f"model {model} ({method})", [weights], *phases)


def _feature_basis_term(config: dict, shape: ModelShape) -> Term:
    """One site's feature basis read from disk (float64 directions, twice while loading)
    and its float64 feature Hessian, twice while it becomes the float32 one pruned with."""
    expansion = config["pruning"]["feature"].get("sae", {}).get("expansion")
    expansion = expansion or config["sae"]["expansion"]
    d = shape.hidden_size
    return Term(
        "one feature basis and its Hessian",
        2 * expansion * d * d * 8 + 2 * d * d * 8,
        ("sae.expansion", "pruning.feature.sae.expansion"),
    )


def evaluate_perplexity_memory(config: dict, model: str, shape: ModelShape) -> Estimate:
    """``perplexity.perplexity``: the weights, a batch's logits (twice with Gemma 2's
    soft-capping), one window's float32 logits and log-softmax, and one block's forward."""
    ppl = config["perplexity"]
    weights = _weights_term(config, model, shape)
    s = DTYPE_BYTES[config["models"][model]["dtype"]]
    window = ppl["window"]
    n_tokens = ppl["max_tokens"] or PERPLEXITY_TOKENS_UNBOUNDED
    batch = min(ppl["batch_size"], math.ceil(n_tokens / ppl["stride"]))
    vocab = shape.vocab_size
    copies = 2 if shape.logit_softcapping else 1
    vocab_key = (
        f"models.{model}.tokenizer.vocab_size"
        if shape.key.endswith(".architecture")
        else f"models.{model}.name"
    )
    scoring = [
        _tokens_term(n_tokens, "perplexity.max_tokens"),
        Term(
            f"logits of batch {batch} x window {window} x vocab {vocab:,}",
            copies * batch * window * vocab * s + 2 * window * vocab * FLOAT32,
            ("perplexity.batch_size", "perplexity.window", vocab_key),
        ),
        Term(
            f"one block's forward on a batch of {batch} x {window}",
            _forward_bytes(shape, batch, window, s),
            ("perplexity.batch_size", "perplexity.window"),
        ),
    ]
    return peak("evaluate_perplexity", f"model {model}", [weights], scoring)


def capture_activations_memory(config: dict, model: str, shape: ModelShape) -> Estimate:
    """``activations.capture_activations``: the weights, the token windows, one block's
    forward per batch, the batch's float32 copy with its float64 copy for the running moments,
    and the one-chunk write buffer."""
    acts = config["activations"]
    weights = _weights_term(config, model, shape)
    s = DTYPE_BYTES[config["models"][model]["dtype"]]
    context = acts["context"]
    windows = max(acts["train_tokens"], acts["eval_tokens"]) // context
    batch = min(acts["batch_size"], max(windows, 1))
    d = shape.hidden_size
    keys = ("activations.batch_size", "activations.context")
    capturing = [
        _tokens_term(acts["train_tokens"] + acts["eval_tokens"], "activations.train_tokens"),
        Term(
            f"one block's forward on a batch of {batch} x {context}",
            _forward_bytes(shape, batch, context, s),
            keys,
        ),
        Term(
            "the batch's activations in float32 and float64",
            batch * context * d * (FLOAT32 + FLOAT64),
            keys,
        ),
        Term("the HDF5 chunk buffer", CACHE_CHUNK_ROWS * d * FLOAT32),
    ]
    return peak("capture_activations", f"model {model}", [weights], capturing)
