"""Activation-level feature survival: does the pruned model still compute the dense features?

One fixed dictionary (the dense reference SAE, or any SAE with an encoder) encodes the
dense and the pruned model's activations of the same tokens, and each feature is compared
with itself across the two models: the Pearson correlation of its activations over the
tokens, the Jaccard overlap of its firing sets and the ratio of its mean activations. No
second SAE is trained, so no number here can come from a shared initialisation (DESIGN.md,
"What a survival number measures"). The reverse view asks the opposite question: which
features of an SAE trained on the pruned model have no activation-correlated dense feature.

Eval sets run to millions of rows and dictionaries to tens of thousands of features, so
everything is accumulated over row chunks as per-feature moments that merge exactly
(Chan et al.), and the result does not depend on how the rows were chunked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from prunescope.activations import require_finite_rows
from prunescope.errors import UserInputError
from prunescope.matching import PAPER_TAUS, check_taus, full_float32_matmul
from prunescope.sae import TopKSAE

CHUNK_ELEMENTS = 2**24
"""Rows x features of one encoded chunk: 128 MiB per float64 copy, whatever d_sae."""
CROSS_BYTES = 4 * 2**30
"""Default budget of the reverse view's float64 cross-moment accumulator: 18,432 x 18,432
(2.7 GB) fits in one pass over the rows; wider dictionaries take several passes."""
PRODUCT_BYTES = 256 * 2**20
"""Target size of one float32 block of a chunk's cross product before it is accumulated."""
CORRELATION_BYTES = 64 * 2**20
"""Target size of one float64 block of correlations (each needs about four such blocks)."""


@runtime_checkable
class LatentEncoder(Protocol):
    """What survival needs of an SAE: its width and a dense, non-negative encoder.

    ``encode`` takes activations as the model produced them, ``(rows, d_model)`` float32
    on any device, applies whatever normalisation the SAE was trained with, and returns
    ``(rows, d_sae)`` latent activations (> 0 means the feature fires) on any device.
    A pretrained SAE (Gemma Scope, SAELens, sparsify) plugs in by providing these two.
    """

    d_sae: int

    def encode(self, x: torch.Tensor) -> torch.Tensor: ...


class TopKLatents:
    """prunescope's ``TopKSAE`` as a ``LatentEncoder``: its own top-k code, scattered dense.

    ``TopKSAE.encode`` returns (values, indices) of the k kept latents; this writes them
    into a zero ``(rows, d_sae)`` matrix and changes nothing else about the SAE.
    """

    def __init__(self, sae: TopKSAE):
        self.sae = sae
        self.d_sae = sae.d_sae

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        values, indices = self.sae.encode(x.to(self.sae.W_enc.device))
        dense = torch.zeros(len(values), self.d_sae, dtype=values.dtype, device=values.device)
        return dense.scatter_(1, indices, values)


def as_latent_encoder(sae) -> LatentEncoder:
    """``sae`` as a ``LatentEncoder``; a ``TopKSAE`` is wrapped, since its own ``encode``
    returns the sparse (values, indices) pair and would otherwise pass the protocol check."""
    if isinstance(sae, TopKSAE):
        return TopKLatents(sae)
    if not isinstance(sae, LatentEncoder):
        raise TypeError(f"{type(sae).__name__} is no SAE encoder: it needs d_sae and encode(x)")
    return sae


# --- the maths: per-feature moments of latent matrices and the statistics built on them ---


class Moments(NamedTuple):
    """Per-feature moments of the rows of one ``(rows, d_sae)`` latent matrix."""

    n: int
    mean: torch.Tensor
    """float64 mean activation."""
    m2: torch.Tensor
    """float64 sum of squared deviations from ``mean``; exactly 0 for a constant feature."""
    fired: torch.Tensor
    """int64 number of rows with activation > 0."""


class PairedMoments(NamedTuple):
    """Moments of two latent matrices on the same rows (A dense, B pruned) and their
    per-feature co-moments."""

    a: Moments
    b: Moments
    c_ab: torch.Tensor
    """float64 sum over rows of (a - mean_a) * (b - mean_b), per feature."""
    fired_both: torch.Tensor
    """int64 rows where the feature fires in both."""


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Centred sums instead of raw sums of squares: sum(x^2) - n mean^2 cancels for a feature
    # that fires on most tokens with a steady value, and a constant feature must come out
    # with variance exactly 0 (its correlation is NaN, not whatever the round-off says).
    # (A float64 sum of float32 copies of one value is exact, so its mean is that value.)
    x64 = x.to(torch.float64, copy=True)
    mean = x64.mean(0)
    return mean, x64.sub_(mean)


def feature_moments(x: torch.Tensor) -> Moments:
    """Moments of one chunk of latents ``x`` (rows, d_sae)."""
    mean, centred = _centred(x)
    m2 = torch.linalg.vecdot(centred, centred, dim=0)
    return Moments(len(x), mean, m2, (x > 0).sum(0))


def paired_moments(a: torch.Tensor, b: torch.Tensor) -> PairedMoments:
    """Moments of one chunk of dense latents ``a`` and pruned latents ``b`` of the same rows."""
    if a.shape != b.shape:
        raise ValueError(f"paired latents differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    mean_a, ca = _centred(a)
    mean_b, cb = _centred(b)
    moments_a = Moments(len(a), mean_a, torch.linalg.vecdot(ca, ca, dim=0), (a > 0).sum(0))
    moments_b = Moments(len(b), mean_b, torch.linalg.vecdot(cb, cb, dim=0), (b > 0).sum(0))
    both = ((a > 0) & (b > 0)).sum(0)
    return PairedMoments(moments_a, moments_b, torch.linalg.vecdot(ca, cb, dim=0), both)


def merge_moments(x: Moments, y: Moments) -> Moments:
    """Moments of the rows of ``x`` and ``y`` together (Chan et al.'s pairwise update)."""
    n = x.n + y.n
    delta = y.mean - x.mean
    mean = x.mean + delta * (y.n / n)
    m2 = x.m2 + y.m2 + delta.square() * (x.n * y.n / n)
    return Moments(n, mean, m2, x.fired + y.fired)


def merge_paired(x: PairedMoments, y: PairedMoments) -> PairedMoments:
    """Paired moments of the rows of ``x`` and ``y`` together."""
    n_x, n_y = x.a.n, y.a.n
    delta_a, delta_b = y.a.mean - x.a.mean, y.b.mean - x.b.mean
    c_ab = x.c_ab + y.c_ab + delta_a * delta_b * (n_x * n_y / (n_x + n_y))
    return PairedMoments(
        merge_moments(x.a, y.a), merge_moments(x.b, y.b), c_ab, x.fired_both + y.fired_both
    )


def firing_rate(m: Moments) -> torch.Tensor:
    """float64 fraction of rows on which each feature fires (as ``evaluate_sae`` counts it)."""
    return m.fired.double() / m.n


def pearson(m: PairedMoments) -> torch.Tensor:
    """Per-feature correlation of dense and pruned activations; NaN where either side has
    zero variance (never fires, or always the same value): undefined, not uncorrelated."""
    scale = torch.sqrt(m.a.m2 * m.b.m2)
    r = (m.c_ab / scale).clamp(-1.0, 1.0)
    return torch.where(scale > 0, r, math.nan)


def jaccard(m: PairedMoments) -> torch.Tensor:
    """|fires in A and B| / |fires in A or B| per feature; NaN when it fires in neither."""
    union = m.a.fired + m.b.fired - m.fired_both
    return torch.where(union > 0, m.fired_both.double() / union.clamp_min(1), math.nan)


def mean_ratio(m: PairedMoments) -> torch.Tensor:
    """Pruned mean activation / dense mean activation; NaN when the dense mean is 0."""
    return torch.where(m.a.mean != 0, m.b.mean / m.a.mean, math.nan)


def survival_table(m: PairedMoments) -> pd.DataFrame:
    """One row per feature: firing rates on both sides and the three survival statistics."""
    columns = {
        "feature": torch.arange(len(m.a.mean)),
        "dense_rate": firing_rate(m.a),
        "pruned_rate": firing_rate(m.b),
        "correlation": pearson(m),
        "jaccard": jaccard(m),
        "mean_ratio": mean_ratio(m),
    }
    table = pd.DataFrame({name: value.cpu().numpy() for name, value in columns.items()})
    table.attrs["n_rows"] = m.a.n
    return table


def add_cross_products(cross: torch.Tensor, p: torch.Tensor, d: torch.Tensor) -> None:
    """``cross += p^T d`` for one chunk of rows: a float32 product, accumulated in float64.

    float32 because the product is a GEMM over whole dictionaries, and one chunk of a few
    thousand rows loses only ~1e-6 relatively; float64 across chunks so the error does not
    grow with millions of rows. The product is formed for blocks of ``cross``'s rows, so
    its float32 copy never exceeds ``PRODUCT_BYTES``.
    """
    step = max(1, PRODUCT_BYTES // (4 * d.shape[1]))
    with full_float32_matmul():
        for lo in range(0, p.shape[1], step):
            cross[lo : lo + step] += p[:, lo : lo + step].T @ d


def cross_correlation(
    cross: torch.Tensor,
    shift_p: torch.Tensor,
    shift_d: torch.Tensor,
    moments_p: Moments,
    moments_d: Moments,
) -> torch.Tensor:
    """Correlation matrix (d_p, d_d) from the summed shifted cross products ``cross`` and
    the per-feature moments of both sides over the same rows; NaN where a feature of either
    side has zero variance.

    cov = sum((p - s_p)(d - s_d)) / n - (mean_p - s_p)(mean_d - s_d), exact for any shift.
    """
    n = moments_p.n
    offset_p = moments_p.mean - shift_p.to(torch.float64)
    offset_d = moments_d.mean - shift_d.to(torch.float64)
    # in place where possible: two (d_p, d_d) temporaries, not six
    cov = cross.to(torch.float64, copy=True).div_(n).addr_(offset_p, offset_d, alpha=-1)
    scale = torch.outer(moments_p.m2.sqrt(), moments_d.m2.sqrt()).div_(n)
    return cov.div_(scale).clamp_(-1.0, 1.0).masked_fill_(scale == 0, math.nan)


def row_best(corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the largest finite value and its first column; (NaN, -1) if none is finite."""
    values, index = corr.nan_to_num(nan=-math.inf).max(dim=1)
    defined = values > -math.inf
    return torch.where(defined, values, math.nan), torch.where(defined, index, -1)


# --- plumbing: rows from caches or iterators, aligned, encoded chunk by chunk ---


def default_batch_rows(d_sae: int) -> int:
    """Rows encoded at a time so a float64 copy of the latents stays near 128 MiB."""
    return max(1, CHUNK_ELEMENTS // d_sae)


def row_count(rows) -> int | None:
    """Rows of an array-like source (numpy, torch, h5py dataset); None for an iterator."""
    shape = getattr(rows, "shape", None)
    return None if shape is None else int(shape[0])


def iter_row_chunks(rows, batch_rows: int) -> Iterator[torch.Tensor]:
    """float32 2-D chunks of ``rows``: slices of an array-like, or an iterator's own chunks."""
    n = row_count(rows)
    chunks = rows if n is None else (rows[s : s + batch_rows] for s in range(0, n, batch_rows))
    for chunk in chunks:
        chunk = torch.as_tensor(np.asarray(chunk) if not torch.is_tensor(chunk) else chunk)
        if chunk.ndim != 2:
            raise ValueError(f"activation rows must come as 2-D chunks, got {tuple(chunk.shape)}")
        yield chunk.to(torch.float32)


def paired_chunks(
    first: Iterable, second: Iterable, batch_rows: int, names: tuple[str, str]
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(first row, rows of ``first``, the same rows of ``second``), at most ``batch_rows``.

    The two sources may be chunked differently; their chunks are cut to common boundaries.
    Sources that end at different rows are refused, naming both and their row counts.
    """
    iters = [(c for c in source if len(c)) for source in (first, second)]
    pending: list = [None, None]
    start = 0
    while True:
        for side in (0, 1):
            if pending[side] is None or not len(pending[side]):
                pending[side] = next(iters[side], None)
        if pending[0] is None or pending[1] is None:
            left = [
                0 if rest is None else len(rest) + sum(map(len, it))
                for rest, it in zip(pending, iters, strict=True)
            ]
            if left[0] or left[1]:
                raise _row_mismatch(names, start + left[0], start + left[1])
            if start == 0:
                raise UserInputError(f"{names[0]} and {names[1]} hold no rows to compare")
            return
        size = min(len(pending[0]), len(pending[1]), batch_rows)
        yield start, pending[0][:size], pending[1][:size]
        pending = [p[size:] for p in pending]
        start += size


def row_pairs(first, second, batch_rows: int, names: tuple[str, str]):
    """``paired_chunks`` over two row sources (array-likes or iterators of chunks)."""
    return paired_chunks(
        iter_row_chunks(first, batch_rows), iter_row_chunks(second, batch_rows), batch_rows, names
    )


def _row_mismatch(names: tuple[str, str], n_first: int, n_second: int) -> UserInputError:
    return UserInputError(
        f"{names[0]} has {n_first} rows but {names[1]} has {n_second}: survival compares "
        "the same tokens, so both must hold the same rows in the same order"
    )


def _check_same_rows(first, second, names: tuple[str, str]) -> None:
    """Refuse array-like sources of different lengths before any encoding starts."""
    n_first, n_second = row_count(first), row_count(second)
    if None not in (n_first, n_second) and n_first != n_second:
        raise _row_mismatch(names, n_first, n_second)


@torch.no_grad()
def encode_rows(encoder: LatentEncoder, rows: torch.Tensor, start: int, source: str):
    """Latents of ``rows`` (starting at row ``start`` of ``source``), checked."""
    require_finite_rows(rows, start, source)
    latents = encoder.encode(rows)
    if not torch.is_tensor(latents) or tuple(latents.shape) != (len(rows), encoder.d_sae):
        got = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
        raise ValueError(
            f"SAE encoder returned {got} for {len(rows)} rows of {source}; expected a "
            f"({len(rows)}, {encoder.d_sae}) tensor of latent activations"
        )
    # NaN fails the >= test too; firing sets and rates assume activations >= 0
    if not bool((latents >= 0).all()) or not bool(torch.isfinite(latents.max())):
        raise ValueError(
            f"SAE encoder returned negative or non-finite latents on rows {start}.."
            f"{start + len(rows) - 1} of {source}; latent activations must be finite and >= 0"
        )
    # an SAE run in bf16 may return bf16 latents: its own rounding is its own, but sums
    # and cross products over them must not round at bf16 too
    return latents.to(torch.float32)


def activation_survival(
    dense_rows,
    pruned_rows,
    sae,
    *,
    control_seed: int | None = None,
    batch_rows: int | None = None,
    sources: tuple[str, str] = ("dense activations", "pruned activations"),
) -> pd.DataFrame:
    """Per-feature survival of ``sae``'s features from dense to pruned activations.

    ``dense_rows`` and ``pruned_rows`` hold the same tokens in the same order: each an
    array-like (h5py dataset, numpy array, tensor) or an iterable of 2-D row chunks.
    ``sources`` names them in errors. Returns the ``survival_table`` columns (feature,
    dense_rate, pruned_rate, correlation, jaccard, mean_ratio), ``attrs["n_rows"]``.

    With ``control_seed``, also ``control_rate`` and ``control_correlation``: the same
    statistics between the dense activations and the dense activations plus random noise
    as large as pruning's change (``matched_noise``), the survival any perturbation of that
    size would leave. This reads the rows twice, so it needs array-like sources.
    """
    encoder = as_latent_encoder(sae)
    _check_same_rows(dense_rows, pruned_rows, sources)
    batch_rows = batch_rows or default_batch_rows(encoder.d_sae)
    profile = generator = control = None
    if control_seed is not None:
        profile = perturbation_profile(dense_rows, pruned_rows, batch_rows, sources)
        generator = torch.Generator().manual_seed(int(control_seed))
    total = None
    chunks = row_pairs(dense_rows, pruned_rows, batch_rows, sources)
    for start, dense, pruned in chunks:
        a = encode_rows(encoder, dense, start, sources[0])
        b = encode_rows(encoder, pruned, start, sources[1])
        part = paired_moments(a, b)
        total = part if total is None else merge_paired(total, part)
        if profile is not None:
            noisy = matched_noise(dense, pruned, profile, generator)
            part = paired_moments(a, encode_rows(encoder, noisy, start, "the noise control"))
            control = part if control is None else merge_paired(control, part)
    table = survival_table(total)
    if control is not None:
        table["control_rate"] = firing_rate(control.b).cpu().numpy()
        table["control_correlation"] = pearson(control).cpu().numpy()
    return table


# --- the control: a random perturbation as large as pruning's ---


def perturbation_profile(
    dense_rows, pruned_rows, batch_rows: int, sources: tuple[str, str]
) -> torch.Tensor:
    """float64 per-dimension mean squared difference (pruned - dense) over all rows."""
    if None in (row_count(dense_rows), row_count(pruned_rows)):
        raise ValueError(
            "the noise control reads the rows twice: pass array-likes (such as the cache's "
            "HDF5 datasets), not iterators"
        )
    total, n = None, 0
    chunks = row_pairs(dense_rows, pruned_rows, batch_rows, sources)
    for _, dense, pruned in chunks:
        part = (pruned.double() - dense.double()).square().sum(0)
        total = part if total is None else total + part
        n += len(dense)
    return total / n


def matched_noise(
    dense: torch.Tensor, pruned: torch.Tensor, profile: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``dense`` moved, row by row, as far as pruning moved it but in a random direction.

    The direction is Gaussian with per-dimension variance ``profile`` (pruning's own mean
    squared change per dimension, so outlier dimensions get their share), drawn on the CPU
    from ``generator`` so a seed gives the same noise on any device; its length is the
    row's ``||pruned - dense||``. A feature that survives pruning no better than this
    noise is fragile to any perturbation of that size, not to pruning in particular. The
    draws follow the chunking, so the same seed and ``batch_rows`` give the same control.
    """
    direction = torch.randn(dense.shape, generator=generator, dtype=torch.float64)
    direction = direction.mul_(profile.cpu().sqrt())
    length = (pruned.double() - dense.double()).norm(dim=1, keepdim=True).cpu()
    norm = direction.norm(dim=1, keepdim=True)
    step = direction.mul_(torch.where(norm > 0, length / norm.clamp_min(1e-300), 0.0))
    return (dense.double() + step.to(dense.device)).to(torch.float32)


@dataclass
class ReverseMatch:
    """Each pruned-SAE feature's best activation-correlated dense-SAE feature."""

    best_dense: np.ndarray
    """int64 dense feature of highest correlation (lowest index on ties); -1 if none."""
    correlation: np.ndarray
    """float64 that correlation; NaN when no dense feature gives a defined correlation."""
    pruned_rate: np.ndarray
    """Firing rate of each pruned-SAE feature on the pruned activations."""
    varies: np.ndarray
    """Whether the feature's activation varies over the tokens (else no correlation)."""
    taus: np.ndarray
    n_rows: int

    def new(self) -> np.ndarray:
        """(n_taus, d_p): the feature varies and no dense feature correlates >= tau."""
        return self.varies & ~(self.correlation >= self.taus[:, None])

    def table(self) -> pd.DataFrame:
        table = pd.DataFrame(
            {
                "feature": np.arange(len(self.best_dense)),
                "pruned_rate": self.pruned_rate,
                "varies": self.varies,
                "best_dense": self.best_dense,
                "correlation": self.correlation,
            }
        )
        table.attrs["n_rows"] = self.n_rows
        return table

    @classmethod
    def from_table(cls, table: pd.DataFrame, taus: Sequence[float]) -> ReverseMatch:
        """A reverse view read back from its ``table()`` (``n_rows`` from attrs, or -1)."""
        return cls(
            best_dense=table["best_dense"].to_numpy(dtype=np.int64),
            correlation=table["correlation"].to_numpy(dtype=np.float64),
            pruned_rate=table["pruned_rate"].to_numpy(dtype=np.float64),
            varies=table["varies"].to_numpy(dtype=bool),
            taus=check_taus(taus),
            n_rows=int(table.attrs.get("n_rows", -1)),
        )

    def counts(self) -> pd.DataFrame:
        """Per tau: alive pruned features, how many are new, and how many have no defined
        correlation (constant features, or no varying dense feature) alongside."""
        alive = self.pruned_rate > 0
        n_alive = int(alive.sum())
        undefined = int((alive & np.isnan(self.correlation)).sum())
        rows = []
        for tau, new in zip(self.taus, self.new(), strict=True):
            n_new = int(new.sum())
            rows.append(
                {
                    "tau": float(tau),
                    "n_alive": n_alive,
                    "n_new": n_new,
                    "new_fraction": n_new / n_alive if n_alive else math.nan,
                    "n_undefined": undefined,
                    "note": "" if n_alive else "no pruned feature fires; fraction undefined",
                }
            )
        return pd.DataFrame(rows)


def dense_block_size(d_p: int, d_d: int, max_bytes: int) -> int:
    """Dense features per pass so the float64 (d_p, block) accumulator fits ``max_bytes``."""
    return max(1, min(d_d, max_bytes // (8 * d_p)))


def best_dense_partners(
    pruned_rows,
    dense_rows,
    pruned_sae,
    dense_sae,
    taus: Sequence[float] = PAPER_TAUS,
    *,
    batch_rows: int | None = None,
    max_bytes: int = CROSS_BYTES,
    sources: tuple[str, str] = ("pruned activations", "dense activations"),
) -> ReverseMatch:
    """For each feature of ``pruned_sae`` (on ``pruned_rows``), the feature of ``dense_sae``
    (on ``dense_rows``, the same tokens) whose activations correlate with it most.

    Peak memory: the float64 (d_p, block) cross-moment accumulator, block = all d_d dense
    features when 8 d_p d_d bytes fit ``max_bytes``, plus one float32 product block
    (``PRODUCT_BYTES``) and the chunk's latents and their shifted copies (about
    8 batch_rows (d_p + d_d) bytes, plus the encoders' own work). At d_p = d_d = 18,432 that
    is a 2.5 GiB accumulator and, measured on CPU with both SAEs loaded, about 4.5 GB in all
    (``memory.reverse_survival_memory`` itemises it). When the accumulator
    does not fit, the rows are read and encoded once per block of dense features, which
    needs array-like sources.
    """
    taus_array = check_taus(taus)
    enc_p, enc_d = as_latent_encoder(pruned_sae), as_latent_encoder(dense_sae)
    d_p, d_d = enc_p.d_sae, enc_d.d_sae
    _check_same_rows(pruned_rows, dense_rows, sources)
    batch_rows = batch_rows or default_batch_rows(max(d_p, d_d))
    block = dense_block_size(d_p, d_d, max_bytes)
    if block < d_d and None in (row_count(pruned_rows), row_count(dense_rows)):
        raise ValueError(
            f"a {d_p} x {d_d} cross-moment matrix exceeds max_bytes={max_bytes}, so the rows "
            "are read once per block of dense features: pass array-likes (such as the "
            "cache's HDF5 datasets), not iterators, or raise max_bytes"
        )
    best = torch.full((d_p,), -math.inf, dtype=torch.float64)
    best_index = torch.full((d_p,), -1, dtype=torch.int64)
    shifts = None
    for lo in range(0, d_d, block):
        columns = slice(lo, min(lo + block, d_d))
        chunks = row_pairs(pruned_rows, dense_rows, batch_rows, sources)
        encoded = (
            (encode_rows(enc_p, p, start, sources[0]), encode_rows(enc_d, d, start, sources[1]))
            for start, p, d in chunks
        )
        cross, moments_p, moments_d, shifts = _cross_pass(encoded, columns, shifts)
        moments_d = Moments(moments_d.n, *(t[columns] for t in moments_d[1:]))
        step = max(1, CORRELATION_BYTES // (8 * cross.shape[1]))
        for p_lo in range(0, d_p, step):
            rows = slice(p_lo, p_lo + step)
            block_p = Moments(moments_p.n, *(t[rows] for t in moments_p[1:]))
            shift_p, shift_d = shifts[0][rows], shifts[1][columns]
            corr = cross_correlation(cross[rows], shift_p, shift_d, block_p, moments_d)
            value, index = (t.cpu() for t in row_best(corr))
            # earlier blocks hold lower dense indices, so only a strictly better value wins
            better = value > best[rows]
            best[rows] = torch.where(better, value, best[rows])
            best_index[rows] = torch.where(better, index + lo, best_index[rows])
        del cross, corr
    return ReverseMatch(
        best_dense=best_index.numpy(),
        correlation=best.masked_fill(best_index < 0, math.nan).numpy(),
        pruned_rate=firing_rate(moments_p).cpu().numpy(),
        varies=(moments_p.m2 > 0).cpu().numpy(),
        taus=taus_array,
        n_rows=moments_p.n,
    )


def _cross_pass(encoded, columns: slice, shifts):
    """One pass over encoded (pruned, dense) latent chunks: the float64 summed shifted
    cross products with the dense features ``columns``, both sides' moments, and the
    shifts (given, or the first chunk's means).

    A shift near each feature's mean keeps ``E[PD] - E[P]E[D]`` from cancelling for
    features that fire on most tokens with a steady value; any shift gives the same
    correlation in exact arithmetic, so the first chunk's means serve.
    """
    cross = moments_p = moments_d = None
    for p, d in encoded:
        part_p, part_d = feature_moments(p), feature_moments(d)
        moments_p = part_p if moments_p is None else merge_moments(moments_p, part_p)
        moments_d = part_d if moments_d is None else merge_moments(moments_d, part_d)
        if shifts is None:
            shifts = part_p.mean.to(p.dtype), part_d.mean.to(d.dtype)
        if cross is None:
            width = len(range(*columns.indices(d.shape[1])))
            cross = torch.zeros(p.shape[1], width, dtype=torch.float64, device=p.device)
        add_cross_products(cross, p - shifts[0], d[:, columns] - shifts[1][columns])
    return cross, moments_p, moments_d, shifts


# --- summaries ---


def survival_fractions(table: pd.DataFrame, taus: Sequence[float] = PAPER_TAUS) -> pd.DataFrame:
    """Per tau: the fraction of alive dense features (dense_rate > 0) whose correlation
    reaches tau, with the counts behind it.

    An alive feature with no defined correlation (silent on the pruned activations, or
    constant on either side) does not survive; ``n_undefined`` counts those and
    ``n_silent`` the ones that never fire on the pruned activations.
    """
    taus_array = check_taus(taus)
    alive = table["dense_rate"].to_numpy() > 0
    correlation = table["correlation"].to_numpy()
    n_alive = int(alive.sum())
    undefined = int((alive & np.isnan(correlation)).sum())
    silent = int((alive & (table["pruned_rate"].to_numpy() == 0)).sum())
    rows = []
    for tau in taus_array:
        n_survived = int((alive & (correlation >= tau)).sum())
        rows.append(
            {
                "tau": float(tau),
                "n_alive": n_alive,
                "n_survived": n_survived,
                "survival": n_survived / n_alive if n_alive else math.nan,
                "n_undefined": undefined,
                "n_silent": silent,
                "note": "" if n_alive else "no dense feature fires; survival undefined",
            }
        )
    return pd.DataFrame(rows)


def new_feature_table(
    reverse: dict[tuple[str, int, str], pd.DataFrame], taus: Sequence[float]
) -> pd.DataFrame:
    """Per (model, layer, condition) and tau: how many alive features of the condition's SAE
    are new (no dense-SAE feature correlates >= tau), beside the floor: the same count for
    a dense SAE of the same seed, which has no pruning to blame. ``reverse`` maps
    (model, layer, condition) to a ``ReverseMatch.table()``, ``dense`` included."""
    rows = []
    for (model, layer, cond), table in reverse.items():
        counts = ReverseMatch.from_table(table, taus).counts()
        rows.append(counts.assign(model=model, layer=layer, condition=cond))
    out = pd.concat(rows, ignore_index=True)
    floor = out[out["condition"] == "dense"].set_index(["model", "layer", "tau"])
    out = out.join(floor["new_fraction"].rename("floor_new_fraction"), on=["model", "layer", "tau"])
    out["excess_over_floor"] = out["new_fraction"] - out["floor_new_fraction"]
    keys = ["model", "layer", "condition", "tau"]
    return out[keys + [c for c in out.columns if c not in keys]]


__all__ = [
    "LatentEncoder",
    "Moments",
    "PairedMoments",
    "ReverseMatch",
    "TopKLatents",
    "activation_survival",
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
