"""How much memory the heavy jobs will need, from the config alone, checked before any job runs.

Each estimate is the peak resident memory of one job, in bytes, derived from the shapes the
config sets: what the job holds for its whole run (weights, optimiser state, buffers) plus
the largest of its phases (a forward batch, a Hessian inverse, a resampling step), each term
named with the config keys that size it. They are upper-ish bounds of what the library
functions really allocate (tests/test_memory.py measures them), plus ``RUNTIME_BYTES`` for
the interpreter, torch and the other libraries every job loads.

The same numbers serve twice: ``check_memory`` refuses a config whose largest jobs cannot fit,
before the first job starts, naming the key to change; and the rule files declare ``mem_mb``
from them, which is what a cluster profile asks the scheduler for.

Which memory a job will have (``job_budgets``): a rule given ``mem_mb`` by ``--set-resources``
(a cluster profile's ``set-resources``) gets exactly that on a cluster, so the check holds its
estimate against it; every other rule is held against this machine's RAM, where a local run
executes it. A job on a GPU keeps most of these bytes in GPU memory instead; the check at
planning time cannot see the GPU (and must not import torch), so ``check_on_device`` lets a
running job hold its estimate against the device it got.

A hub model's widths are not in the config: its jobs are skipped here until a job holding the
model's ``config.json`` passes its shape (``ModelShape.from_hf_config``) to ``check_memory``.

Nothing here imports torch or numpy: Snakemake's main process imports this module to plan.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prunescope.architectures import language_model_config
from prunescope.errors import UserInputError
from prunescope.plan import model_grid, model_shape, parse_method

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

# Pipeline order: the first job of a config that cannot fit is the one reported.
LM_JOBS = (
    "train_local_model",
    "prune_model",
    "evaluate_perplexity",
    "capture_activations",
    "train_sae",
    "match_dictionaries",
    "activation_survival",
    "reverse_survival",
)
ALIGN_JOBS = (
    "estimate_align_hessian",
    "prune_align_nets",
    "solve_align_mip",
    "finetune_align_nets",
)
HEAVY_JOBS = LM_JOBS + ALIGN_JOBS


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Term:
    """Bytes one thing a job holds takes, what it is (with the sizes), and the keys that size it."""

    what: str
    bytes: int
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Estimate:
    """A job's peak resident memory: its terms at the worst moment, plus the runtime."""

    rule: str
    subject: str
    terms: tuple[Term, ...]

    @property
    def sized_bytes(self) -> int:
        """The bytes the config's sizes drive, without the runtime."""
        return sum(term.bytes for term in self.terms)

    @property
    def bytes(self) -> int:
        return self.sized_bytes + RUNTIME_BYTES

    @property
    def mem_mb(self) -> int:
        return math.ceil(self.bytes / MB)

    @property
    def job(self) -> str:
        return f"{self.rule} for {self.subject}"

    def largest(self) -> Term:
        return max(self.terms, key=lambda term: term.bytes)

    def keys(self) -> list[str]:
        """What to lower: the keys of the largest term and of any term at least a quarter of
        its size, largest first, at most three."""
        largest = self.largest().bytes
        keys: list[str] = []
        for term in sorted(self.terms, key=lambda term: -term.bytes):
            if term.bytes >= largest / 4:
                keys += [key for key in term.keys if key not in keys]
        return keys[:3]


def _peak(rule: str, subject: str, held: list[Term], *phases: list[Term]) -> Estimate:
    """What is held throughout plus the phase that needs the most on top of it."""
    worst = max(phases, key=lambda terms: sum(t.bytes for t in terms), default=[])
    return Estimate(rule, subject, tuple(t for t in (*held, *worst) if t.bytes > 0))


def _gb(n_bytes: float) -> str:
    if n_bytes >= 10_000 * GB:
        return f"{n_bytes / 1000 / GB:,.1f} TB"
    return f"{n_bytes / GB:,.1f} GB"


# --------------------------------------------------------------------------- model shapes


@dataclass(frozen=True)
class ModelShape:
    """The widths of a Llama/Gemma-style decoder that size its weights and activations."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool
    norms_per_layer: int = 2
    """RMSNorm weights of hidden_size per block: 2 for Llama, 4 for Gemma 2 and 3."""
    qk_norm: bool = False
    """Gemma 3 normalises queries and keys (two head_dim weights per block)."""
    logit_softcapping: bool = False
    """Gemma 2 squashes the logits through tanh: one more logits-sized tensor."""
    key: str = "models"
    """Where the config sets these widths, for messages."""

    @classmethod
    def from_local(cls, config: dict, model: str) -> ModelShape:
        """A model trained here: its ``architecture`` block and tokenizer vocabulary."""
        spec = config["models"][model]
        arch = model_shape(config, model)  # the architecture block over LlamaConfig's defaults
        heads = arch["num_attention_heads"]
        return cls(
            hidden_size=arch["hidden_size"],
            intermediate_size=arch["intermediate_size"],
            num_hidden_layers=arch["num_hidden_layers"],
            # an upper bound: a small corpus can leave the BPE vocabulary short of it
            vocab_size=spec["tokenizer"]["vocab_size"],
            num_attention_heads=heads,
            num_key_value_heads=arch.get("num_key_value_heads") or heads,
            head_dim=arch["hidden_size"] // heads,
            tie_word_embeddings=arch["tie_word_embeddings"],
            key=f"models.{model}.architecture",
        )

    @classmethod
    def from_hf_config(cls, hf_config: Mapping, model: str = "") -> ModelShape:
        """A transformers config (``config.json`` as a dict, or ``config.to_dict()``)."""
        # multimodal configs nest the LM's; GPT-2 and OPT name some widths their own way
        cfg = language_model_config(dict(hf_config))
        model_type = str(cfg.get("model_type", ""))
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        gemma = model_type.startswith("gemma")
        return cls(
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_hidden_layers=int(cfg["num_hidden_layers"]),
            vocab_size=int(cfg["vocab_size"]),
            num_attention_heads=heads,
            num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", gemma)),
            norms_per_layer=4 if model_type in ("gemma2", "gemma3", "gemma3_text") else 2,
            qk_norm=model_type in ("gemma3", "gemma3_text"),
            logit_softcapping=bool(cfg.get("final_logit_softcapping")),
            key=f"models.{model}" if model else "models",
        )

    @property
    def attention_width(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of one block's q, k, v, o, gate, up and down projections."""
        d, inner = self.hidden_size, self.intermediate_size
        attn, kv = self.attention_width, self.kv_width
        return [(attn, d), (kv, d), (kv, d), (d, attn), (inner, d), (inner, d), (d, inner)]

    @property
    def prunable_parameters(self) -> int:
        return self.num_hidden_layers * sum(rows * cols for rows, cols in self.linear_shapes())

    @property
    def parameters(self) -> int:
        d = self.hidden_size
        embeddings = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        norms = self.num_hidden_layers * (
            self.norms_per_layer * d + (2 * self.head_dim if self.qk_norm else 0)
        )
        return embeddings + self.prunable_parameters + norms + d


def local_shape(config: dict, model: str) -> ModelShape | None:
    """The model's shape when the config alone gives it (a model trained here), else None."""
    if config["models"][model]["source"] == "local":
        return ModelShape.from_local(config, model)
    return None


def hub_shape(config: dict, model: str) -> ModelShape | None:
    """A hub model's shape when its config.json is already on this machine (a local folder,
    the copy under results/, the Hugging Face cache: ``plan.model_shape``), else None."""
    if config["models"][model]["source"] != "hf":
        return None
    found = model_shape(config, model)
    try:
        return None if found is None else ModelShape.from_hf_config(found, model)
    except (KeyError, TypeError, ValueError):  # not a decoder config this module can size
        return None


def hub_shapes(config: dict) -> dict[str, ModelShape]:
    """``hub_shape`` of every hub model whose shape is known now."""
    shapes = {model: hub_shape(config, model) for model in config["models"]}
    return {model: shape for model, shape in shapes.items() if shape is not None}


# --------------------------------------------------------------------------- activations


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
    return _peak("train_local_model", f"model {model}", held, step, saving)


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
        if base == "sparsegpt":
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
        phases.append(calibrating)
    return _peak("prune_model", f"model {model} ({method})", [weights], *phases)


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
    return _peak("evaluate_perplexity", f"model {model}", [weights], scoring)


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
    return _peak("capture_activations", f"model {model}", [weights], capturing)


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
    return _peak("train_sae", f"model {model}", held, *phases)


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
    return _peak("match_dictionaries", f"model {model}", [], loading, matching)


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
    return _peak("activation_survival", f"model {model}", [sae], [loading], comparing, noising)


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
    return _peak(
        "reverse_survival",
        f"model {model}",
        [pruned_sae, dense_sae],
        [loading],
        moments,
        accumulating,
        correlating,
    )


# --------------------------------------------------------------------------- Study ALIGN


def _task(config: dict, task: str) -> tuple[int, int, int, str]:
    """(width m = h = d = d_in, classes, training samples, the key that sets the width)."""
    align = config["align"]
    spec = align["tasks"][task]
    if spec["kind"] == "digits":
        n_train = math.ceil(DIGITS_SAMPLES * (1 - align["digits"]["test_fraction"]))
        return DIGITS_PIXELS, 10, n_train, f"align.tasks.{task}"
    m = spec["literals"]
    return m, 2, align["dnf"]["train_per_16_literals"] * m // 16, f"align.tasks.{task}.literals"


def _dataset_term(config: dict, task: str) -> Term:
    m, _, n_train, width_key = _task(config, task)
    align = config["align"]
    n_test = (
        align["dnf"]["test_per_16_literals"] * m // 16
        if align["tasks"][task]["kind"] == "dnf"
        else DIGITS_SAMPLES - n_train
    )
    return Term(
        f"the dataset ({n_train + n_test:,} samples x {m})",
        (n_train + n_test) * (m * FLOAT32 + INT64),
        (width_key, "align.dnf.train_per_16_literals"),
    )


def estimate_align_hessian_memory(config: dict, task: str) -> Estimate:
    """``hessian.w1_hessian`` then ``prune.damped_inverse``.

    The Hessian over W1 is (h*d)^2 float64. Building it holds one chunk's Gauss-Newton rows
    (chunk x classes x h*d) and, when symmetrising, two more (h*d)^2 arrays. The damped inverse
    then holds six: the Hessian, the damped copy, its Cholesky factor, the identity it solves
    against (copied to Fortran order), the inverse and its symmetrised copy.
    """
    m, classes, n_train, width_key = _task(config, task)
    size = m * m
    square = size * size * FLOAT64
    fraction = config["align"]["hessian"][f"{config['align']['tasks'][task]['kind']}_fraction"]
    n_sample = max(1, round(fraction * n_train))
    chunk = min(HESSIAN_CHUNK, n_sample)
    what = f"(h*d)^2 = {size:,}^2 float64"
    held = [
        _dataset_term(config, task),
        Term("the sampled inputs and features in float64", n_sample * m * (FLOAT32 + 2 * FLOAT64)),
    ]
    accumulating = [
        Term(f"the Hessian {what}", square, (width_key,)),
        Term(
            f"a chunk of {chunk:,} samples' Gauss-Newton rows",
            chunk * classes * (size + m) * FLOAT64,
            (width_key, f"align.hessian.{config['align']['tasks'][task]['kind']}_fraction"),
        ),
    ]
    symmetrising = [
        Term(f"the Hessian {what} and two symmetrised copies", 3 * square, (width_key,))
    ]
    inverting = [
        Term(
            f"the Hessian {what}, its damped inverse and their temporaries",
            6 * square,
            (width_key,),
        )
    ]
    return _peak(
        "estimate_align_hessian", f"task {task}", held, accumulating, symmetrising, inverting
    )


def _variants(config: dict, structure: str) -> tuple[int, float]:
    """How many variants one structure prunes, and its highest sparsity."""
    align = config["align"]
    sparsities = [s for s in align["sparsities"] if structure != "2of4" or s >= 0.5]
    return len(sparsities) * len(align["methods"]), max(sparsities, default=0.0)


def prune_align_nets_memory(config: dict, task: str, structure: str) -> Estimate:
    """``experiment.prune_variants``: the Hessian and its inverse as read from disk, and for
    OBS and FLO the joint compensation over the p pruned weights: the inverse restricted to
    them (p^2), its Cholesky factor (p^2) and its p columns (h*d x p)."""
    m, _, _, width_key = _task(config, task)
    size = m * m
    _, top = _variants(config, structure)
    pruned = round(top * size) if {"obs", "flo"} & set(config["align"]["methods"]) else 0
    held = [
        _dataset_term(config, task),
        Term(
            f"the Hessian and its inverse ((h*d)^2 = {size:,}^2 float64 each)",
            2 * size * size * FLOAT64,
            (width_key,),
        ),
    ]
    compensating = [
        Term(
            f"the OBS compensation over {pruned:,} pruned weights",
            (2 * pruned * pruned + size * pruned) * FLOAT64,
            (width_key, "align.sparsities"),
        )
    ]
    return _peak("prune_align_nets", f"task {task} ({structure})", held, compensating)


def _count_supports(d: int, keep: int, block: tuple[int, int] | None) -> int:
    """Supports of ``keep`` entries of d (at most n per m under a block): what the MIP
    enumerates (the same count as ``align.mip.count_supports``)."""
    if block is None:
        return math.comb(d, min(keep, d))
    n, m = block
    k = min(keep, n * (d // m))
    ways = [1] + [0] * k
    for _ in range(d // m):
        ways = [
            sum(math.comb(m, c) * ways[j - c] for c in range(min(n, j) + 1)) for j in range(k + 1)
        ]
    return ways[k]


def solve_align_mip_memory(config: dict, task: str, structure: str) -> Estimate:
    """``mip.solve_layer`` per worker process (``align.mip.threads`` of them): the branch and
    bound's depth-first path holds a downdated d x d inverse and a pair-cost matrix per level,
    up to d - keep levels; enumeration holds a batch of keep x keep systems and their factors."""
    m, _, _, width_key = _task(config, task)
    mip = config["align"]["mip"]
    block = (2, 4) if structure == "2of4" else None
    sparsities = [s for s in config["align"]["sparsities"] if block is None or s >= 0.5]
    worst = 0
    for sparsity in sparsities:
        keep = m - round(sparsity * m)
        count = _count_supports(m, keep, block)
        if count <= mip["enumerate_limit"]:
            need = 3 * min(ENUMERATION_BATCH, count) * keep * keep * FLOAT64
        else:
            need = ((m - keep) * 2 + 5) * m * m * FLOAT64
        worst = max(worst, need)
    threads = mip["threads"]
    work = [
        Term(
            f"{threads} workers' searches over rows of {m}",
            threads * worst,
            (width_key, "align.mip.threads"),
        ),
        Term("C0, W1 and C0 C0^T", 4 * m * m * FLOAT64),
    ]
    return _peak("solve_align_mip", f"task {task} ({structure})", work)


def finetune_align_nets_memory(config: dict, task: str, structure: str) -> Estimate:
    """``experiment.finetune_variants`` and the metrics around it, for every variant stacked:
    the nets as read and as copied, the flat parameters with Adam's moments, the gradient
    and its concatenation, the masks; a batch's (variants, h, batch) activations; an
    evaluation batch of 8192; the float64 copies the metrics take."""
    m, classes, n_train, width_key = _task(config, task)
    n_variants, _ = _variants(config, structure)
    per_net = 2 * m * m + (classes + 1) * m + classes
    params = n_variants * per_net * FLOAT32
    batch = config["align"]["finetuning"]["batch_size"]
    variant_keys = ("align.sparsities", "align.methods", width_key)
    held = [
        _dataset_term(config, task),
        Term(
            f"{n_variants} stacked nets, Adam state and masks",
            8 * params + 2 * n_variants * m * m,
            variant_keys,
        ),
    ]
    training = [
        Term(
            f"a batch of {batch} through {n_variants} nets",
            6 * n_variants * m * (batch + m) * FLOAT32,
            (*variant_keys, "align.finetuning.batch_size"),
        )
    ]
    rows = min(ALIGN_EVAL_ROWS, n_train)
    evaluating = [
        Term(
            f"an evaluation batch of {rows} through {n_variants} nets and float64 copies",
            3 * n_variants * m * rows * FLOAT32 + 3 * n_variants * per_net * FLOAT64,
            variant_keys,
        )
    ]
    return _peak("finetune_align_nets", f"task {task} ({structure})", held, training, evaluating)


# --------------------------------------------------------------------------- the config's jobs


def _model_shape(config: dict, model: str, shapes: Mapping[str, ModelShape]) -> ModelShape | None:
    return shapes.get(model) or local_shape(config, model)


def model_estimates(config: dict, model: str, shape: ModelShape) -> Iterator[Estimate]:
    """The heavy jobs of one model, in pipeline order."""
    if config["models"][model]["source"] == "local":
        yield train_local_model_memory(config, model)
    for method in model_grid(config, model):
        yield prune_model_memory(config, model, method, shape)
    yield evaluate_perplexity_memory(config, model, shape)
    yield capture_activations_memory(config, model, shape)
    yield train_sae_memory(config, model, shape.hidden_size)
    yield match_dictionaries_memory(config, model, shape.hidden_size)
    yield activation_survival_memory(config, model, shape.hidden_size)
    yield reverse_survival_memory(config, model, shape.hidden_size)


def align_estimates(config: dict) -> Iterator[Estimate]:
    align = config.get("align")
    if not align:
        return
    for task in align["tasks"]:
        yield estimate_align_hessian_memory(config, task)
        for structure in align["structures"]:
            yield prune_align_nets_memory(config, task, structure)
            if {"mip", "flo", "mip_mask"} & set(align["methods"]):
                yield solve_align_mip_memory(config, task, structure)
            yield finetune_align_nets_memory(config, task, structure)


def config_estimates(
    config: dict, shapes: Mapping[str, ModelShape] | None = None
) -> list[Estimate]:
    """Every heavy job's estimate (one per distinct size), pipeline order within each study.
    Hub models are left out unless ``shapes`` gives their shape."""
    shapes = shapes or {}
    found = []
    for model in config["models"]:
        shape = _model_shape(config, model, shapes)
        if shape is not None:
            found += model_estimates(config, model, shape)
    order = {rule: i for i, rule in enumerate(HEAVY_JOBS)}
    found.sort(key=lambda e: order[e.rule])
    return found + list(align_estimates(config))


def job_estimate(
    config: dict, rule: str, wildcards: Mapping[str, str], shape: ModelShape | None = None
) -> Estimate | None:
    """One job's estimate from its rule and wildcards; None for a hub model without ``shape``."""
    if rule in ALIGN_JOBS:
        task = wildcards["task"]
        if rule == "estimate_align_hessian":
            return estimate_align_hessian_memory(config, task)
        builders = {
            "prune_align_nets": prune_align_nets_memory,
            "solve_align_mip": solve_align_mip_memory,
            "finetune_align_nets": finetune_align_nets_memory,
        }
        return builders[rule](config, task, wildcards["structure"])
    model = wildcards["model"]
    if rule == "train_local_model":
        return train_local_model_memory(config, model)
    shape = shape or local_shape(config, model)
    if shape is None:
        return None
    if rule == "prune_model":
        return prune_model_memory(config, model, wildcards["method"], shape)
    if rule == "evaluate_perplexity":
        return evaluate_perplexity_memory(config, model, shape)
    if rule == "capture_activations":
        return capture_activations_memory(config, model, shape)
    if rule == "train_sae":
        return train_sae_memory(config, model, shape.hidden_size)
    if rule == "match_dictionaries":
        return match_dictionaries_memory(config, model, shape.hidden_size)
    if rule == "activation_survival":
        return activation_survival_memory(config, model, shape.hidden_size)
    if rule == "reverse_survival":
        return reverse_survival_memory(config, model, shape.hidden_size)
    raise ValueError(f"no memory estimate for rule {rule!r}; heavy rules are {list(HEAVY_JOBS)}")


def job_mem_mb(
    config: dict,
    rule: str,
    wildcards: Mapping[str, str],
    inputs: list[str],
    known_shapes: dict[str, ModelShape],
) -> int | None:
    """A job's ``mem_mb`` for Snakemake: its estimate, in MB.

    A hub model is sized from ``known_shapes`` (what the dry-run found) or, once its
    config.json is on this machine, from that, which is then kept in ``known_shapes``.
    While neither is there and the job's inputs are not built, ``FileNotFoundError`` tells
    Snakemake to ask again when the job is ready (a dry-run shows ``<TBD>``).
    """
    model = wildcards.get("model")
    shape = None
    if model is not None and config["models"][model]["source"] == "hf":
        shape = known_shapes.get(model) or hub_shape(config, model)
        if shape is None:
            missing = [path for path in inputs if not os.path.exists(path)]
            if missing:
                raise FileNotFoundError(errno.ENOENT, "not built yet", missing[0])
            return None
        known_shapes[model] = shape
    estimate = job_estimate(config, rule, wildcards, shape)
    return None if estimate is None else estimate.mem_mb


# --------------------------------------------------------------------------- the check


def machine_memory() -> int:
    """This machine's physical RAM in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class Budget:
    """The memory a job will have, and where that figure comes from (for the message)."""

    bytes: int
    source: str


def set_resources_mem_mb(overwrite_resources: Mapping[str, Mapping]) -> dict[str, int]:
    """The ``mem_mb`` each rule gets from ``--set-resources`` (a profile's ``set-resources``),
    where it is a number: plain values, or Snakemake's parsed ``Resource`` objects."""
    found = {}
    for rule, resources in overwrite_resources.items():
        value = resources.get("mem_mb")
        try:
            value = getattr(value, "value", value)  # a Resource; an expression has no value yet
        except ValueError:
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[rule] = int(value)
    return found


def job_budgets(declared_mem_mb: Mapping[str, int], machine_bytes: int) -> dict[str, Budget]:
    """The memory each heavy rule's jobs will have.

    A rule given ``mem_mb`` by ``--set-resources`` (a cluster profile's ``set-resources``)
    gets that much from the scheduler on a cluster, so that is its budget; on a local run,
    where Snakemake does not enforce ``mem_mb``, it is still the most the user said it may
    take. Every other rule (asking for its own estimate) is held against this machine's RAM,
    where a local run executes it.
    """
    budgets = {}
    for rule in HEAVY_JOBS:
        if rule in declared_mem_mb:
            mem_mb = declared_mem_mb[rule]
            budgets[rule] = Budget(mem_mb * MB, f"its set-resources mem_mb {mem_mb:,} gives")
        else:
            budgets[rule] = Budget(machine_bytes, "this machine has")
    return budgets


def check_estimate(estimate: Estimate, budget: Budget) -> None:
    """Raise ``UserInputError`` when ``estimate`` exceeds ``budget``: one sentence with the
    job, its estimate and largest part, the memory it will have and the keys to lower."""
    if estimate.bytes <= budget.bytes:
        return
    largest = estimate.largest() if estimate.terms else None
    if largest is None or largest.bytes < RUNTIME_BYTES:
        # no key of the config can help: the job's libraries alone take this much
        part, advice = Term("Python, torch and the libraries every job loads", RUNTIME_BYTES), ""
    else:
        part, advice = largest, f"; lower {' or '.join(estimate.keys())}"
    raise UserInputError(
        f"{estimate.job} would need about {_gb(estimate.bytes)} (largest part: {part.what}, "
        f"{_gb(part.bytes)}) but {budget.source} {_gb(budget.bytes)}{advice}"
    )


def check_memory(
    config: dict,
    available: int | Mapping[str, Budget],
    shapes: Mapping[str, ModelShape] | None = None,
) -> None:
    """Refuse a config whose heavy jobs cannot fit, before any job runs.

    ``available``: bytes every job may use (this machine's RAM), or per rule a ``Budget``
    (``job_budgets``). Hub models are checked only when ``shapes`` gives their shape (a job
    holding the model's config.json: ``ModelShape.from_hf_config``). Raises
    ``UserInputError`` for the first job, in pipeline order, that would not fit.
    """
    if isinstance(available, int):
        available = {rule: Budget(available, "this machine has") for rule in HEAVY_JOBS}
    for estimate in config_estimates(config, shapes):
        budget = available.get(estimate.rule)
        if budget is not None:
            check_estimate(estimate, budget)


def check_on_device(estimate: Estimate, device) -> None:
    """In a running job: hold ``estimate`` against the GPU it runs on (its total memory; the
    runtime share stands for the CUDA context there), or this machine's RAM on a CPU.
    Imports torch, so only for jobs."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        check_estimate(estimate, Budget(total, f"GPU {index} has"))
        return
    check_estimate(estimate, Budget(machine_memory(), "this machine has"))


def check_hub_model(config: dict, model: str, hf_config: Mapping, device) -> None:
    """For the first job holding a hub model's ``config.json`` (as a dict): every heavy job of
    that model, now that its widths are known, held against ``device`` (``check_on_device``)."""
    shape = ModelShape.from_hf_config(hf_config, model)
    for estimate in model_estimates(config, model, shape):
        check_on_device(estimate, device)
