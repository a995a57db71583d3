"""Dictionary matching: all three metrics at the paper's five thresholds, against a matmul.

Two SAE seeds share many features, so the test dictionaries are not isotropic noise:
B holds noisy copies of 60 % of A's rows (cosines spread over 0.3-1.0) plus fresh
random rows, shuffled, and a fifth of A's rows are split siblings of other A rows
(cosine 0.5-0.85), so a B copy lies near several A features and greedy 1-to-1 has
real conflicts to settle. About half of A then has a partner above 0.5, as between
real seeds.

The reference is the work no matching can avoid: the bare float32 product A @ B^T in
the same row blocks, into one reused block. Peak memory is measured in a fresh
interpreter that builds the dictionaries itself. Greedy's input is recorded on every
call, to check it gets only the pairs above the lowest threshold, never all n^2.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from bench.harness import interleaved_medians, peak_rss_bytes_of, target
from prunescope import matching
from prunescope.settings import PAPER_TAUS, PRIMARY_TAU

SHAPES = {
    "tiny": {"latents": (128, 256, 512), "d_model": 64},
    "full": {"latents": (4_608, 9_216, 18_432), "d_model": 2_304},
}
SHARED_FRACTION = 0.6
SIBLING_FRACTION = 0.2
MAX_CANDIDATE_FRACTION = 0.01
"""Greedy may sort at most this fraction of the n^2 pairs (about 3e-5 here)."""
TIME_BOUND_S = 60.0
MEMORY_BOUND_GB = 4.0


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` random float32 unit vectors in ``d`` dimensions."""
    rows = rng.standard_normal((n, d), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def noisy_copies(rng: np.random.Generator, base: np.ndarray, cosines: np.ndarray) -> np.ndarray:
    """Unit rows whose cosine with the matching row of ``base`` is exactly ``cosines``."""
    noise = unit_rows(rng, *base.shape)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    noise *= np.sqrt(1.0 - cosines**2)[:, None]
    noise += cosines[:, None] * base
    return noise


def seed_pair(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decoders (n, d) of two SAE seeds that share many features (see module docstring)."""
    rng = np.random.default_rng(seed)
    a = unit_rows(rng, n, d)
    n_siblings = int(SIBLING_FRACTION * n)
    siblings = rng.permutation(n)[:n_siblings]
    parents = rng.integers(0, n, n_siblings)
    sibling_cos = rng.uniform(0.5, 0.85, n_siblings).astype(np.float32)
    a[siblings] = noisy_copies(rng, a[parents], sibling_cos)
    n_shared = int(SHARED_FRACTION * n)
    shared = rng.permutation(n)[:n_shared]
    copy_cos = rng.uniform(0.3, 1.0, n_shared).astype(np.float32)
    b = np.empty_like(a)
    b[:n_shared] = noisy_copies(rng, a[shared], copy_cos)
    b[n_shared:] = unit_rows(rng, n - n_shared, d)
    return a, b[rng.permutation(n)]


def blocked_matmul(a: torch.Tensor, b: torch.Tensor, block_rows: int, device: str) -> None:
    """A @ B^T in row blocks of A into one reused block: the reference cost."""
    b_t = b.to(device).T
    block = torch.empty((min(block_rows, len(a)), len(b)), dtype=torch.float32, device=device)
    with matching.full_float32_matmul():
        for start in range(0, len(a), block_rows):
            stop = min(start + block_rows, len(a))
            torch.mm(a[start:stop].to(device), b_t, out=block[: stop - start])


@contextlib.contextmanager
def recording_greedy_input() -> Iterator[list[dict]]:
    """Record how many pairs greedy 1-to-1 receives on each match, and their lowest cosine."""
    calls: list[dict] = []
    original = matching.greedy_partners

    def recorded(rows, cols, cos, taus, n_a, n_b):
        lowest = float(np.min(cos)) if len(cos) else None
        calls.append({"pairs": len(rows), "lowest_cos": lowest, "lowest_tau": float(min(taus))})
        return original(rows, cols, cos, taus, n_a, n_b)

    matching.greedy_partners = recorded
    try:
        yield calls
    finally:
        matching.greedy_partners = original


def greedy_input_summary(call: dict, n_a: int, n_b: int) -> dict:
    """Candidate count, its share of all pairs, and whether any lies below the lowest tau."""
    below = call["lowest_cos"] is not None and call["lowest_cos"] < np.float32(call["lowest_tau"])
    return {
        "candidate_pairs": call["pairs"],
        "candidates_per_pair": call["pairs"] / (n_a * n_b),
        "candidates_below_lowest_tau": int(below),
        "lowest_candidate_cos": call["lowest_cos"],
    }


def measure_size(n: int, d: int, device: str, repeats: int, warmup: int) -> dict:
    """Matching and the bare blocked matmul of one seed pair, timed in alternation."""
    a, b = seed_pair(n, d, seed=n)
    a_t, b_t = torch.from_numpy(a), torch.from_numpy(b)
    block_rows = matching.default_block_rows(n, n)
    results = []
    with recording_greedy_input() as calls:
        times = interleaved_medians(
            {
                "match": lambda: results.append(
                    matching.match_dictionaries(a, b, block_rows=block_rows, device=device)
                ),
                "matmul": lambda: blocked_matmul(a_t, b_t, block_rows, device),
            },
            repeats=repeats,
            warmup=warmup,
        )
    rates = results[-1].rates()
    primary = next(row for row in rates if row["tau"] == PRIMARY_TAU)
    match_s, matmul_s = times["match"]["median_s"], times["matmul"]["median_s"]
    return {
        "case": f"match {n}x{d}",
        "device": device,
        "n_a": n,
        "n_b": n,
        "d_model": d,
        "taus": list(PAPER_TAUS),
        "block_rows": block_rows,
        "repeats": repeats,
        "match_median_s": match_s,
        "matmul_median_s": matmul_s,
        "match_over_matmul": match_s / matmul_s,
        "match_samples_s": times["match"]["samples_s"],
        "matmul_samples_s": times["matmul"]["samples_s"],
        "matmul_gflops": 2 * n * n * d / matmul_s / 1e9,
        **greedy_input_summary(calls[-1], n, n),
        "greedy_calls_all_clean": all(
            c["lowest_cos"] is None or c["lowest_cos"] >= np.float32(c["lowest_tau"]) for c in calls
        ),
        f"rates_at_{PRIMARY_TAU}": {key: primary[key] for key in ("one_way", "mnn", "greedy")},
        "rates": rates,
    }


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from bench.matching import recording_greedy_input, seed_pair
from prunescope.matching import match_dictionaries
a, b = seed_pair({n}, {d}, seed={n})
with recording_greedy_input() as calls:
    started = time.perf_counter()
    result = match_dictionaries(a, b, device="cpu")
    seconds = time.perf_counter() - started
print(json.dumps({{"match_s": seconds, "greedy": calls[-1], "rates": result.rates()}}))
"""


def measure_peak_memory(n: int, d: int) -> dict:
    """Peak RSS of a fresh interpreter that builds one seed pair and matches it."""
    root = str(Path(__file__).resolve().parent.parent)
    stdout, peak = peak_rss_bytes_of(CHILD.format(root=root, n=n, d=d))
    child = json.loads(stdout.strip().splitlines()[-1])
    return {
        "case": f"peak memory {n}x{d}",
        "device": "cpu",
        "n_a": n,
        "n_b": n,
        "d_model": d,
        "peak_rss_bytes": peak,
        "peak_rss_gb": peak / 1e9,
        "dictionaries_gb": 2 * n * d * 4 / 1e9,
        "match_s_single_run": child["match_s"],
        **greedy_input_summary(child["greedy"], n, n),
    }


def run(size: str) -> dict:
    """Scaling over three dictionary sizes, peak memory at the largest, GPU when present."""
    shape = SHAPES[size]
    d, largest = shape["d_model"], shape["latents"][-1]
    cases = []
    for n in shape["latents"]:
        warmup = 0 if (size == "full" and n == largest) else 1
        cases.append(measure_size(n, d, "cpu", repeats=3, warmup=warmup))
    memory = measure_peak_memory(largest, d)
    cases.append(memory)
    record = {"cases": cases}
    if torch.cuda.is_available():
        cases.append(measure_size(largest, d, "cuda", repeats=3, warmup=1))
    else:
        record["gpu"] = "skipped: no CUDA device"
    big = next(c for c in cases if c["case"] == f"match {largest}x{d}" and c["device"] == "cpu")
    all_greedy = [c for c in cases if "candidate_pairs" in c]
    record["targets"] = [
        target(f"match {largest}x{d} (s)", big["match_median_s"], TIME_BOUND_S, "<=", " s"),
        target("peak memory (GB)", memory["peak_rss_gb"], MEMORY_BOUND_GB, "<=", " GB"),
        target(
            "greedy candidates / n^2",
            max(c["candidates_per_pair"] for c in all_greedy),
            MAX_CANDIDATE_FRACTION,
            "<=",
        ),
        target(
            "greedy candidates below the lowest tau",
            sum(c["candidates_below_lowest_tau"] for c in all_greedy),
            0,
            "<=",
        ),
    ]
    record["scaling"] = [
        {key: c[key] for key in ("n_a", "match_median_s", "matmul_median_s", "match_over_matmul")}
        for c in cases
        if c["case"].startswith("match ") and c["device"] == "cpu"
    ]
    return record
