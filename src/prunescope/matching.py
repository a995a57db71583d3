"""Match the features of two SAE dictionaries by decoder cosine (paper section 3.3).

Each feature is its decoder direction (a row of ``W_dec``, l2-normalised). Dictionaries
of 18,432 features make the dense similarity matrix 1.3 GB, and the workflow matches
many pairs, so similarities are computed in blocks of A's rows and reduced on the fly:
per-feature best partners in both directions plus the short list of candidate pairs
above the lowest threshold, which is all the greedy 1-to-1 matching needs.

Every rate is a fraction of dictionary A's features. Cosines are compared with each
threshold in float32, the precision they were computed in, so one feature is judged
the same way by every metric. Ties go to the lower index.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from prunescope.models import pick_device
from prunescope.settings import PAPER_TAUS

BLOCK_BYTES = 256 * 2**20
"""Target size of one float32 block of the similarity matrix."""


@dataclass
class MatchResult:
    """Per-feature matches of dictionary A (n_a features) against B (n_b features).

    ``mnn[i]`` says that A feature ``i`` and its best B partner are each other's best
    match, whatever the cosine; a threshold applies on top (see ``survival_per_feature``).
    ``greedy_partner[t, i]`` is the B feature greedily matched to A feature ``i`` at
    ``taus[t]``, or -1.
    """

    a_best: np.ndarray
    a_best_cos: np.ndarray
    b_best: np.ndarray
    b_best_cos: np.ndarray
    mnn: np.ndarray
    greedy_partner: np.ndarray
    taus: np.ndarray
    attrs: dict = field(default_factory=dict)

    @property
    def n_a(self) -> int:
        return len(self.a_best)

    @property
    def n_b(self) -> int:
        return len(self.b_best)

    def rates(self) -> list[dict]:
        """One dict per threshold: match counts and rates as fractions of A's features."""
        rows = []
        for t, tau in enumerate(self.taus):
            one_way = int((self.a_best_cos >= np.float32(tau)).sum())
            mnn = int(survival_per_feature(self, float(tau)).sum())
            greedy = int((self.greedy_partner[t] >= 0).sum())
            rows.append(
                {
                    "tau": float(tau),
                    "one_way": one_way / self.n_a,
                    "mnn": mnn / self.n_a,
                    "greedy": greedy / self.n_a,
                    "n_a": self.n_a,
                    "n_b": self.n_b,
                    "one_way_count": one_way,
                    "mnn_count": mnn,
                    "greedy_count": greedy,
                }
            )
        return rows


def survival_per_feature(result: MatchResult, tau: float) -> np.ndarray:
    """A features that survive in B at ``tau``: mutual nearest neighbours with cos >= tau.

    MNN is the paper's primary (most conservative) metric, so this is the survival flag
    the quintile analysis (RQ4) groups by firing rate.
    """
    return result.mnn & (result.a_best_cos >= np.float32(tau))


def swap_sides(result: MatchResult) -> MatchResult:
    """The same match read from B's side: B's features against A's.

    Best partners and their cosines are stored for both sides, and MNN pairs and greedy
    1-to-1 pairs are symmetric, so nothing is recomputed. The result equals matching B
    against A directly, except that greedy breaks exact cosine ties by A's index first.
    ``attrs`` swap their ``_a``/``_b`` keys.
    """
    n_taus = len(result.taus)
    greedy = np.full((n_taus, result.n_b), -1, dtype=np.int64)
    for t in range(n_taus):
        rows = np.flatnonzero(result.greedy_partner[t] >= 0)
        greedy[t, result.greedy_partner[t, rows]] = rows
    side = {"_a": "_b", "_b": "_a"}
    attrs = {
        (key[:-2] + side[key[-2:]] if key[-2:] in side else key): value
        for key, value in result.attrs.items()
    }
    return MatchResult(
        a_best=result.b_best.copy(),
        a_best_cos=result.b_best_cos.copy(),
        b_best=result.a_best.copy(),
        b_best_cos=result.a_best_cos.copy(),
        mnn=result.a_best[result.b_best] == np.arange(result.n_b),
        greedy_partner=greedy,
        taus=result.taus.copy(),
        attrs=attrs,
    )


def best_cosine(result: MatchResult) -> np.ndarray:
    """Cosine of each A feature with its best B match: the robust/fragile ranking score."""
    return result.a_best_cos.copy()


def normalise_directions(
    decoder: torch.Tensor | np.ndarray, name: str = "dictionary"
) -> torch.Tensor:
    """Float32 unit-norm rows of a (n_features, d) decoder matrix.

    A zero row has no direction, and NaN/Inf would silently poison every argmax, so
    both are refused.
    """
    matrix = torch.as_tensor(decoder).detach().to(torch.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty (n_features, d) matrix, got {tuple(matrix.shape)}"
        )
    norms = matrix.norm(dim=1, keepdim=True)
    # A NaN or Inf entry makes its row norm non-finite, so the slow full scan runs only then.
    if not bool(torch.isfinite(norms).all()) and not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    zero_rows = (norms[:, 0] == 0).nonzero()
    if len(zero_rows):
        raise ValueError(f"{name} row {int(zero_rows[0, 0])} has zero norm and no direction")
    return matrix / norms


MATCH_SPACES = ("model", "normalised")


def decoder_in_space(
    decoder: torch.Tensor, std: torch.Tensor | None, space: str = "model"
) -> torch.Tensor:
    """The decoder rows of an SAE trained on standardised inputs, as directions to match.

    ``normalised``: the rows as trained, in the SAE's own standardised space. ``model``:
    the direction each feature adds to the model's residual stream, ``W_dec[i] * std``
    (decoding undoes the standardisation dimension by dimension), so two SAEs trained on
    caches with different per-dimension scales are compared where the model computes.
    """
    if space not in MATCH_SPACES:
        raise ValueError(f"match space {space!r} is not one of {MATCH_SPACES}")
    if space == "normalised" or std is None:
        return decoder
    # float32 like the matching itself: one decoder-sized copy, as in the normalised space
    return decoder.to(torch.float32) * std.to(torch.float32)[None, :]


def default_block_rows(n_a: int, n_b: int) -> int:
    """Rows of A per block so that one float32 block of similarities is about 256 MB."""
    return max(1, min(n_a, BLOCK_BYTES // (4 * n_b)))


def match_dictionaries(
    dec_a: torch.Tensor | np.ndarray,
    dec_b: torch.Tensor | np.ndarray,
    taus: Sequence[float] = PAPER_TAUS,
    *,
    block_rows: int | None = None,
    device: torch.device | str | None = None,
) -> MatchResult:
    """Best partners, MNN flags and greedy 1-to-1 matches between two decoders.

    ``dec_a`` (n_a, d) and ``dec_b`` (n_b, d) hold one feature direction per row (SAE
    ``W_dec``). Rates derived from the result are fractions of A's features. The
    n_a x n_b similarity matrix is never held whole: ``block_rows`` rows of A at a time
    (default: ~256 MB per block) on ``device`` (default: CUDA when available).
    """
    taus_array = check_taus(taus)
    if block_rows is not None and block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    a = normalise_directions(dec_a, "dictionary A")
    b = normalise_directions(dec_b, "dictionary B")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"dictionaries have different widths: A has d={a.shape[1]}, B has d={b.shape[1]}"
        )
    device = pick_device("auto") if device is None else torch.device(device)
    block_rows = block_rows or default_block_rows(len(a), len(b))
    reduced = _blocked_reduction(a, b, float(taus_array.min()), block_rows, device)
    a_best, a_best_cos, b_best, b_best_cos, cand_rows, cand_cols, cand_cos = reduced
    mnn = b_best[a_best] == np.arange(len(a_best))
    greedy_partner = greedy_partners(cand_rows, cand_cols, cand_cos, taus_array, len(a), len(b))
    return MatchResult(
        a_best=a_best,
        a_best_cos=a_best_cos,
        b_best=b_best,
        b_best_cos=b_best_cos,
        mnn=mnn,
        greedy_partner=greedy_partner,
        taus=taus_array,
    )


def check_taus(taus: Sequence[float]) -> np.ndarray:
    taus_array = np.asarray(taus, dtype=np.float64).reshape(-1)
    if taus_array.size == 0:
        raise ValueError("taus must name at least one threshold")
    if not np.all((taus_array >= -1.0) & (taus_array <= 1.0)):
        raise ValueError(f"every tau must lie in [-1, 1], got {taus_array.tolist()}")
    return taus_array


@contextlib.contextmanager
def full_float32_matmul() -> Iterator[None]:
    """Keep TF32 off: its ~1e-3 cosine error would move features across a threshold."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _blocked_reduction(
    a: torch.Tensor, b: torch.Tensor, min_tau: float, block_rows: int, device: torch.device
) -> tuple[np.ndarray, ...]:
    """One pass over row blocks of A @ B^T: row argmax, running column max, candidates."""
    n_a, n_b = len(a), len(b)
    b_t = b.to(device).T
    threshold = torch.tensor(min_tau, dtype=torch.float32, device=device)
    block = torch.empty((min(block_rows, n_a), n_b), dtype=torch.float32, device=device)
    a_best = torch.empty(n_a, dtype=torch.int64, device=device)
    a_best_cos = torch.empty(n_a, dtype=torch.float32, device=device)
    b_best = torch.zeros(n_b, dtype=torch.int64, device=device)
    b_best_cos = torch.full((n_b,), -torch.inf, dtype=torch.float32, device=device)
    cand_rows, cand_cols, cand_cos = [], [], []
    starts = range(0, n_a, block_rows)
    with full_float32_matmul():
        progress = tqdm(
            starts, desc="match blocks", file=sys.stderr, mininterval=10, disable=len(starts) < 4
        )
        for start in progress:
            stop = min(start + block_rows, n_a)
            sims = torch.mm(a[start:stop].to(device), b_t, out=block[: stop - start])
            sims.clamp_(-1.0, 1.0)
            row_cos, row_arg = sims.max(dim=1)
            a_best_cos[start:stop], a_best[start:stop] = row_cos, row_arg
            col_cos, col_arg = column_max(sims)
            improved = col_cos > b_best_cos
            b_best_cos = torch.where(improved, col_cos, b_best_cos)
            b_best = torch.where(improved, col_arg + start, b_best)
            rows, cols, cos = _pairs_at_or_above(sims, row_cos, threshold)
            cand_rows.append((rows + start).to(torch.int32).cpu().numpy())
            cand_cols.append(cols.to(torch.int32).cpu().numpy())
            cand_cos.append(cos.cpu().numpy())
    return (
        a_best.cpu().numpy(),
        a_best_cos.cpu().numpy(),
        b_best.cpu().numpy(),
        b_best_cos.cpu().numpy(),
        np.concatenate(cand_rows),
        np.concatenate(cand_cols),
        np.concatenate(cand_cos),
    )


def column_max(matrix: torch.Tensor, chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``matrix.max(dim=0)``, values and first indices, in two cheap passes.

    A reduction across rows with indices runs an order of magnitude slower on CPU than
    one without, so chunks of ``chunk`` rows are reduced to their maxima first; the index
    search then only reads the winning chunk of each column. The first chunk holding the
    maximum, then the first row in it, is the first row overall: ties go to the lower index.
    """
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"column_max needs a matrix with rows, got {tuple(matrix.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n_rows, n_cols = matrix.shape
    whole = (n_rows // chunk) * chunk
    parts = []
    if whole:
        parts.append(matrix[:whole].reshape(n_rows // chunk, chunk, n_cols).amax(dim=1))
    if whole < n_rows:
        parts.append(matrix[whole:].amax(dim=0, keepdim=True))
    values, winning_chunk = torch.cat(parts).max(dim=0)
    offsets = torch.arange(chunk, device=matrix.device)[:, None]
    # Rows past the end of a short last chunk repeat the last row, after its real position.
    rows = (winning_chunk[None, :] * chunk + offsets).clamp_(max=n_rows - 1)
    within = torch.gather(matrix, 0, rows).argmax(dim=0)
    return values, winning_chunk * chunk + within


def _pairs_at_or_above(
    sims: torch.Tensor, row_max: torch.Tensor, threshold: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row, column and value of every entry >= threshold, in row-major order.

    Only rows whose maximum reaches the threshold can hold one, and the index search
    (the slow part) reads just those rows: about half the block for two SAE seeds.
    """
    hit_rows = (row_max >= threshold).nonzero()[:, 0]
    pairs = (sims >= threshold).index_select(0, hit_rows).nonzero()
    rows, cols = hit_rows[pairs[:, 0]], pairs[:, 1]
    return rows, cols, sims[rows, cols]


def greedy_partners(
    rows: np.ndarray,
    cols: np.ndarray,
    cos: np.ndarray,
    taus: np.ndarray,
    n_a: int,
    n_b: int,
) -> np.ndarray:
    """Greedy 1-to-1 matching at every tau from one pass over the candidate pairs.

    Pairs go by cosine descending, then lower A index, then lower B index (a stable sort
    of candidates already in row-major order, as the blocked pass yields them); a pair is
    accepted when neither feature is taken yet. Greedy decisions depend only on the
    pairs before, so the matching restricted to pairs >= tau is the accepted pairs with
    cos >= tau: one pass serves every tau. Returns (n_taus, n_a) B indices, -1 if none.
    """
    rows, cols, cos = np.asarray(rows), np.asarray(cols), np.asarray(cos)
    flat = rows.astype(np.int64) * n_b + cols
    if np.any(flat[1:] <= flat[:-1]):
        by_index = np.argsort(flat, kind="stable")
        rows, cols, cos = rows[by_index], cols[by_index], cos[by_index]
    order = np.argsort(-cos, kind="stable")
    rows, cols, cos = rows[order], cols[order], cos[order]
    accepted = _greedy_accept(rows, cols, n_a, n_b)
    acc_rows, acc_cols, acc_cos = rows[accepted], cols[accepted], cos[accepted]
    partner = np.full((len(taus), n_a), -1, dtype=np.int64)
    for t, tau in enumerate(taus):
        keep = acc_cos >= np.float32(tau)
        partner[t, acc_rows[keep]] = acc_cols[keep]
    return partner


def _greedy_accept(
    rows: np.ndarray, cols: np.ndarray, n_a: int, n_b: int, chunk: int = 65_536
) -> np.ndarray:
    """Positions of accepted pairs in an already sorted candidate list.

    Greedy is sequential, but a pair whose features were taken before its chunk started
    is rejected by a vectorised test; only the rest go through the Python loop, which
    keeps ten million candidates at a few seconds.
    """
    used_a_bytes, used_b_bytes = bytearray(n_a), bytearray(n_b)
    used_a = np.frombuffer(used_a_bytes, dtype=np.uint8)
    used_b = np.frombuffer(used_b_bytes, dtype=np.uint8)
    accepted = []
    remaining = min(n_a, n_b)
    for start in range(0, len(rows), chunk):
        if remaining == 0:
            break
        chunk_rows, chunk_cols = rows[start : start + chunk], cols[start : start + chunk]
        open_pairs = np.flatnonzero((used_a[chunk_rows] == 0) & (used_b[chunk_cols] == 0))
        candidates = zip(
            (open_pairs + start).tolist(),
            chunk_rows[open_pairs].tolist(),
            chunk_cols[open_pairs].tolist(),
            strict=True,
        )
        for position, i, j in candidates:
            if not used_a_bytes[i] and not used_b_bytes[j]:
                used_a_bytes[i] = used_b_bytes[j] = 1
                accepted.append(position)
                remaining -= 1
    return np.asarray(accepted, dtype=np.int64)
