"""Activation-level survival against brute-force references on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from prunescope.analysis import activation_quintile_rows
from prunescope.errors import UserInputError
from prunescope.sae import TopKSAE, evaluate_sae
from prunescope.stats import firing_rate_quintiles
from prunescope.survival import (
    LatentEncoder,
    ReverseMatch,
    TopKLatents,
    activation_survival,
    add_cross_products,
    as_latent_encoder,
    best_dense_partners,
    cross_correlation,
    feature_moments,
    jaccard,
    matched_noise,
    mean_ratio,
    merge_paired,
    new_feature_table,
    paired_chunks,
    paired_moments,
    pearson,
    perturbation_profile,
    row_best,
    survival_fractions,
    survival_table,
)

# tiny tensors: thread start-up costs more than the maths on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- brute-force references: one feature at a time, straight from the definitions ---


def ref_pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def ref_jaccard(x: np.ndarray, y: np.ndarray) -> float:
    fires_x, fires_y = set(np.flatnonzero(x > 0)), set(np.flatnonzero(y > 0))
    union = fires_x | fires_y
    return len(fires_x & fires_y) / len(union) if union else math.nan


def ref_mean_ratio(x: np.ndarray, y: np.ndarray) -> float:
    mean_x = x.astype(np.float64).mean()
    return y.astype(np.float64).mean() / mean_x if mean_x != 0 else math.nan


def ref_table(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    columns = [(a[:, j], b[:, j]) for j in range(a.shape[1])]
    return pd.DataFrame(
        {
            "feature": np.arange(a.shape[1]),
            "dense_rate": [(x > 0).mean() for x, _ in columns],
            "pruned_rate": [(y > 0).mean() for _, y in columns],
            "correlation": [ref_pearson(x, y) for x, y in columns],
            "jaccard": [ref_jaccard(x, y) for x, y in columns],
            "mean_ratio": [ref_mean_ratio(x, y) for x, y in columns],
        }
    )


def latent_pair(rows: int = 23, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sparse non-negative latents (dense A, pruned B) with every edge case in a column:
    0 never fires anywhere, 1 fires only in A, 2 only in B, 3 constant in A (always on),
    4 constant in both, 5 B = 2 A, 6 B = A, 7 fires on disjoint rows; the rest random."""
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.normal(size=(rows, 12)) - 0.5, 0).astype(np.float32)
    b = np.maximum(a + rng.normal(scale=0.5, size=a.shape) - 0.2, 0).astype(np.float32)
    a[:, 0] = b[:, 0] = 0
    b[:, 1] = 0
    a[:, 2] = 0
    a[:, 3] = 0.75
    a[:, 4], b[:, 4] = 0.1, 0.3
    b[:, 5] = 2 * a[:, 5]
    b[:, 6] = a[:, 6]
    a[:, 7] = np.where(np.arange(rows) % 2 == 0, 1.0, 0.0)
    b[:, 7] = np.where(np.arange(rows) % 2 == 1, 1.5, 0.0)
    return a, b


def assert_table_close(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    for column in want.columns:
        np.testing.assert_allclose(
            got[column].to_numpy(dtype=float), want[column].to_numpy(dtype=float), atol=1e-12
        )


# --- per-feature moments and statistics ---


def test_one_chunk_statistics_match_brute_force():
    a, b = latent_pair()
    got = survival_table(paired_moments(torch.from_numpy(a), torch.from_numpy(b)))
    want = ref_table(a, b)
    assert_table_close(got, want)
    # the edge cases are NaN, not 0: undefined is not uncorrelated
    assert np.isnan(got["correlation"][[0, 1, 2, 3, 4]]).all()
    assert np.isnan(got["jaccard"][0]) and got["jaccard"][1] == 0
    assert np.isnan(got["mean_ratio"][[0, 2]]).all() and got["mean_ratio"][5] == pytest.approx(2)
    assert got["correlation"][6] == pytest.approx(1) and got["jaccard"][7] == 0
    assert got.attrs["n_rows"] == len(a)


@pytest.mark.parametrize("sizes", [[23], [1] * 23, [5, 2, 9, 7], [11, 12], [22, 1]])
def test_merged_chunks_give_the_single_chunk_result(sizes):
    a, b = latent_pair(seed=1)
    a[:, 9] = 3.0  # a constant feature across uneven chunks must keep variance exactly 0
    edges = np.cumsum([0, *sizes])
    parts = [
        paired_moments(torch.from_numpy(a[lo:hi]), torch.from_numpy(b[lo:hi]))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    total = parts[0]
    for part in parts[1:]:
        total = merge_paired(total, part)
    assert total.a.m2[9] == 0 and total.a.m2[3] == 0
    assert_table_close(survival_table(total), ref_table(a, b))


def test_statistic_functions_agree_with_their_definitions():
    a, b = latent_pair(seed=2)
    m = paired_moments(torch.from_numpy(a), torch.from_numpy(b))
    for j in range(a.shape[1]):
        for got, ref in (
            (pearson, ref_pearson),
            (jaccard, ref_jaccard),
            (mean_ratio, ref_mean_ratio),
        ):
            value, expected = float(got(m)[j]), ref(a[:, j], b[:, j])
            assert value == pytest.approx(expected, abs=1e-12, nan_ok=True), (got.__name__, j)


def test_moments_of_one_matrix():
    a, _ = latent_pair(seed=3)
    m = feature_moments(torch.from_numpy(a))
    x = a.astype(np.float64)
    np.testing.assert_allclose(m.mean.numpy(), x.mean(0), atol=1e-14)
    np.testing.assert_allclose(m.m2.numpy(), ((x - x.mean(0)) ** 2).sum(0), atol=1e-12)
    np.testing.assert_array_equal(m.fired.numpy(), (a > 0).sum(0))


# --- the row plumbing ---


def test_paired_chunks_cut_different_chunkings_to_common_rows():
    x = np.arange(16 * 2).reshape(16, 2)
    first = [x[:5], x[5:7], x[7:7], x[7:]]
    second = [x[:1], x[1:]]
    pieces = list(paired_chunks(first, second, 4, ("one", "two")))
    starts = [start for start, _, _ in pieces]
    assert [len(p) for _, p, _ in pieces] == [1, 4, 2, 4, 4, 1]
    assert starts == list(np.cumsum([0, 1, 4, 2, 4, 4]))
    np.testing.assert_array_equal(np.concatenate([p for _, p, _ in pieces]), x)
    np.testing.assert_array_equal(np.concatenate([q for _, _, q in pieces]), x)


@pytest.mark.parametrize("longer", ["one", "two"])
def test_paired_chunks_name_both_sources_when_rows_differ(longer):
    x = np.zeros((10, 2))
    first, second = ([x, x[:3]], [x]) if longer == "one" else ([x], [x[:4], x[:7]])
    counts = (13, 10) if longer == "one" else (10, 11)
    with pytest.raises(ValueError, match=f"one has {counts[0]} rows but two has {counts[1]}"):
        list(paired_chunks(first, second, 4, ("one", "two")))


def test_paired_chunks_refuse_empty_sources():
    with pytest.raises(ValueError, match="one and two hold no rows"):
        list(paired_chunks([], [np.zeros((0, 3))], 4, ("one", "two")))


class ReluLinear:
    """A minimal LatentEncoder: ReLU(x W + c), with a column that never fires."""

    def __init__(self, d_model: int, d_sae: int, seed: int):
        rng = np.random.default_rng(seed)
        self.weight = torch.from_numpy(rng.normal(size=(d_model, d_sae)).astype(np.float32))
        self.bias = torch.from_numpy(rng.normal(size=d_sae).astype(np.float32))
        self.bias[0] = -1e6
        self.d_sae = d_sae
        self.calls = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.relu(x @ self.weight + self.bias)


def activations(rows: int = 40, d_model: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, d_model)).astype(np.float32)
    pruned = (dense + rng.normal(scale=0.6, size=dense.shape)).astype(np.float32)
    return dense, pruned


def test_activation_survival_matches_brute_force_whatever_the_chunking():
    dense, pruned = activations()
    encoder = ReluLinear(6, 9, seed=1)
    assert isinstance(encoder, LatentEncoder)
    want = ref_table(
        encoder.encode(torch.from_numpy(dense)).numpy(),
        encoder.encode(torch.from_numpy(pruned)).numpy(),
    )
    for batch_rows in (1, 7, 40, 1000):
        assert_table_close(activation_survival(dense, pruned, encoder, batch_rows=batch_rows), want)
    uneven = activation_survival(
        iter([dense[:13], dense[13:14], dense[14:]]), iter([pruned[:30], pruned[30:]]), encoder
    )
    assert_table_close(uneven, want)


def test_matched_noise_moves_each_row_as_far_as_pruning_did():
    dense, pruned = activations(rows=200)
    dense[7] = pruned[7]  # a token pruning left alone stays where it is
    profile = torch.tensor([4.0, 0.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    noisy = matched_noise(
        torch.from_numpy(dense), torch.from_numpy(pruned), profile, torch.Generator().manual_seed(3)
    ).numpy()
    step = noisy - dense
    want = np.linalg.norm(pruned.astype(np.float64) - dense, axis=1)
    np.testing.assert_allclose(np.linalg.norm(step, axis=1), want, rtol=1e-5, atol=1e-6)
    assert np.all(step[:, 1] == 0)  # no variance in a dimension pruning never changed
    assert np.all(step[7] == 0)
    # the direction is random: nearly uncorrelated with pruning's own change
    cosine = np.sum(step * (pruned - dense), axis=1) / (want**2 + 1e-12)
    assert abs(cosine.mean()) < 0.1


def test_perturbation_profile_is_the_mean_squared_change_per_dimension():
    dense, pruned = activations(rows=50)
    got = perturbation_profile(dense, pruned, 7, ("a", "b")).numpy()
    want = np.mean((pruned.astype(np.float64) - dense) ** 2, axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="reads the rows twice"):
        activation_survival(iter([dense]), iter([pruned]), ReluLinear(6, 9, seed=1), control_seed=0)


def test_noise_control_columns_against_a_direct_computation():
    dense, pruned = activations(rows=60)
    encoder = ReluLinear(6, 9, seed=1)
    got = activation_survival(dense, pruned, encoder, control_seed=5, batch_rows=16)
    # the same draws by hand: chunk by chunk from one generator
    profile = torch.from_numpy(np.mean((pruned.astype(np.float64) - dense) ** 2, axis=0))
    generator = torch.Generator().manual_seed(5)
    noisy = np.concatenate(
        [
            matched_noise(
                torch.from_numpy(dense[s : s + 16]),
                torch.from_numpy(pruned[s : s + 16]),
                profile,
                generator,
            ).numpy()
            for s in range(0, 60, 16)
        ]
    )
    a = encoder.encode(torch.from_numpy(dense)).numpy()
    c = encoder.encode(torch.from_numpy(noisy)).numpy()
    want = ref_table(a, c)
    np.testing.assert_allclose(got["control_rate"], want["pruned_rate"])
    np.testing.assert_allclose(got["control_correlation"], want["correlation"], atol=1e-9)
    # the columns without the control are unchanged by it
    plain = activation_survival(dense, pruned, encoder, batch_rows=16)
    pd.testing.assert_frame_equal(got[plain.columns], plain)
    again = activation_survival(dense, pruned, encoder, control_seed=5, batch_rows=16)
    pd.testing.assert_frame_equal(got, again)


def test_row_count_mismatch_is_refused_before_encoding_arrays():
    dense, pruned = activations()
    encoder = ReluLinear(6, 9, seed=1)
    names = ("L1.h5 eval (dense)", "L1.h5 eval (wanda-0.5)")
    with pytest.raises(UserInputError, match=r"\(dense\) has 40 rows but .*\(wanda-0.5\) has 39"):
        activation_survival(dense, pruned[:39], encoder, sources=names)
    assert encoder.calls == 0
    with pytest.raises(ValueError, match=r"\(dense\) has 40 rows but .*\(wanda-0.5\) has 41"):
        activation_survival(iter([dense]), iter([pruned, pruned[:1]]), encoder, sources=names)


def test_bad_rows_and_bad_latents_are_named():
    dense, pruned = activations()
    pruned[17, 2] = np.nan
    with pytest.raises(FloatingPointError, match="pruned activations has NaN in row 17"):
        activation_survival(dense, pruned, ReluLinear(6, 9, seed=1), batch_rows=5)

    class Signed(ReluLinear):
        def encode(self, x):
            return x @ self.weight

    with pytest.raises(ValueError, match="negative or non-finite latents on rows 0..39"):
        activation_survival(dense, dense, Signed(6, 9, seed=1))
    with pytest.raises(TypeError, match="no SAE encoder"):
        as_latent_encoder(object())


# --- prunescope's TopKSAE through the protocol ---


def topk_sae(d_model: int = 6, d_sae: int = 32, k: int = 4) -> TopKSAE:
    rng = np.random.default_rng(5)
    mean, std = rng.normal(size=d_model), rng.uniform(0.5, 2.0, size=d_model)
    sae = TopKSAE(d_model, d_sae, k, mean, std, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc.copy_(torch.from_numpy(rng.normal(scale=0.5, size=d_sae)))
    return sae


def test_topk_through_the_protocol_is_its_own_code():
    sae = topk_sae()
    x = torch.from_numpy(activations(rows=50)[0] * 2 + 1)
    with torch.no_grad():
        values, indices = sae.encode(x)
    expected = np.zeros((50, sae.d_sae), dtype=np.float32)
    for row in range(50):
        for value, index in zip(values[row].numpy(), indices[row].numpy(), strict=True):
            expected[row, index] = value
    latents = as_latent_encoder(sae).encode(x)
    assert isinstance(as_latent_encoder(sae), TopKLatents)
    np.testing.assert_array_equal(latents.numpy(), expected)
    assert (latents > 0).sum(1).max() <= sae.k


def test_topk_dense_firing_rates_are_evaluate_sae_rates():
    sae = topk_sae()
    dense, pruned = activations(rows=64)
    table = activation_survival(dense, pruned, sae, batch_rows=16)
    metrics = evaluate_sae(sae, dense, batch_size=16)
    np.testing.assert_array_equal(table["dense_rate"], metrics["firing_rate"])
    assert table["dense_rate"].gt(0).sum() == metrics["alive"]


# --- the reverse view ---


def ref_cross_correlation(p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """np.corrcoef of every pruned feature with every dense feature; NaN for constant ones."""
    d_p = p.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.corrcoef(p.astype(np.float64).T, d.astype(np.float64).T)
    corr = full[:d_p, d_p:]
    constant_p = np.all(p == p[0], axis=0)
    constant_d = np.all(d == d[0], axis=0)
    corr[constant_p, :] = np.nan
    corr[:, constant_d] = np.nan
    return corr


@pytest.mark.parametrize("shift", [0.0, 0.37])
def test_cross_correlation_matches_corrcoef(shift):
    a, b = latent_pair(seed=4)
    p, d = torch.from_numpy(b[:, :7]), torch.from_numpy(a)
    cross = torch.zeros(7, 12, dtype=torch.float64)
    shift_p, shift_d = torch.full((7,), shift), torch.full((12,), shift / 2)
    for lo in range(0, len(p), 6):  # as the plumbing does: chunk by chunk
        add_cross_products(cross, p[lo : lo + 6] - shift_p, d[lo : lo + 6] - shift_d)
    corr = cross_correlation(cross, shift_p, shift_d, feature_moments(p), feature_moments(d))
    np.testing.assert_allclose(corr.numpy(), ref_cross_correlation(b[:, :7], a), atol=1e-6)


def test_row_best_takes_the_lowest_index_on_ties_and_skips_nan():
    nan = math.nan
    corr = torch.tensor(
        [[0.2, 0.9, 0.9], [nan, 0.1, nan], [nan, nan, nan], [-0.5, nan, -0.7]], dtype=torch.float64
    )
    values, index = row_best(corr)
    np.testing.assert_array_equal(index.numpy(), [1, 1, -1, 0])
    np.testing.assert_array_equal(values.numpy(), [0.9, 0.1, nan, -0.5])


def reverse_reference(p: np.ndarray, d: np.ndarray, taus) -> tuple[np.ndarray, ...]:
    corr = ref_cross_correlation(p, d)
    best = np.full(p.shape[1], np.nan)
    partner = np.full(p.shape[1], -1)
    for j, row in enumerate(corr):
        if np.isfinite(row).any():
            partner[j] = int(np.nanargmax(row))
            best[j] = row[partner[j]]
    varies = ~np.all(p == p[0], axis=0)
    new = np.array([[varies[j] and not (best[j] >= t) for j in range(len(best))] for t in taus])
    return partner, best, new


@pytest.mark.parametrize("max_bytes", [2**30, 8 * 11 * 3])
def test_best_dense_partners_match_brute_force(max_bytes):
    dense, pruned = activations(rows=45, seed=3)
    enc_p, enc_d = ReluLinear(6, 11, seed=7), ReluLinear(6, 8, seed=8)
    taus = (0.3, 0.6, 0.9)
    got = best_dense_partners(pruned, dense, enc_p, enc_d, taus, batch_rows=10, max_bytes=max_bytes)
    p = enc_p.encode(torch.from_numpy(pruned)).numpy()
    d = enc_d.encode(torch.from_numpy(dense)).numpy()
    partner, best, new = reverse_reference(p, d, taus)
    np.testing.assert_array_equal(got.best_dense, partner)
    np.testing.assert_allclose(got.correlation, best, atol=1e-6)
    np.testing.assert_array_equal(got.new(), new)
    assert got.best_dense[0] == -1 and np.isnan(got.correlation[0])  # never fires
    np.testing.assert_array_equal(got.pruned_rate, (p > 0).mean(0))
    counts = got.counts()
    assert counts["n_alive"].tolist() == [10] * 3
    assert counts["n_new"].tolist() == new.sum(1).tolist()


class Identity:
    """Latents are the rows themselves: lets a test choose the latents exactly."""

    def __init__(self, d_sae: int):
        self.d_sae = d_sae

    def encode(self, x):
        return x


def test_ties_across_passes_go_to_the_lowest_dense_index():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(30, 1)).astype(np.float32)  # small integers: exact sums
    pruned = np.concatenate([x, 3 - x], axis=1)
    dense = np.concatenate([rng.integers(0, 4, size=(30, 1)), x, x, 3 - x, x, 3 - x], 1)
    dense = dense.astype(np.float32)
    for max_bytes in (2**30, 8 * 2):  # one pass; one dense feature per pass
        got = best_dense_partners(pruned, dense, Identity(2), Identity(6), max_bytes=max_bytes)
        np.testing.assert_array_equal(got.best_dense, [1, 3])
        np.testing.assert_allclose(got.correlation, [1.0, 1.0])


def test_bf16_latents_are_summed_in_float32():
    dense, pruned = activations(rows=60, seed=4)

    class Bf16(ReluLinear):
        def encode(self, x):
            return super().encode(x).to(torch.bfloat16)

    enc_p, enc_d = Bf16(6, 7, seed=2), Bf16(6, 5, seed=3)
    got = best_dense_partners(pruned, dense, enc_p, enc_d, batch_rows=25)
    p = enc_p.encode(torch.from_numpy(pruned)).float().numpy()
    d = enc_d.encode(torch.from_numpy(dense)).float().numpy()
    partner, best, _ = reverse_reference(p, d, [0.5])
    np.testing.assert_array_equal(got.best_dense, partner)
    np.testing.assert_allclose(got.correlation, best, atol=1e-6)


def test_best_dense_partners_refuse_several_passes_over_iterators_and_mismatched_rows():
    dense, pruned = activations(rows=20)
    enc_p, enc_d = ReluLinear(6, 11, seed=7), ReluLinear(6, 8, seed=8)
    with pytest.raises(ValueError, match="pass array-likes"):
        best_dense_partners(iter([pruned]), iter([dense]), enc_p, enc_d, max_bytes=8 * 11)
    with pytest.raises(ValueError, match="pruned activations has 19 rows but dense"):
        best_dense_partners(pruned[:19], dense, enc_p, enc_d)


def test_reverse_view_holds_precision_for_a_feature_that_is_always_on():
    """A feature firing on every token at ~100 +- 0.001: raw float32 sums E[PD] - E[P]E[D]
    would lose every digit; the shift by the first chunk's means keeps them."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 2))
    p = np.stack([100 + 1e-3 * base[:, 0], np.maximum(base[:, 1], 0)], axis=1)
    d = np.stack([50 + 1e-3 * (base[:, 0] + 0.3 * rng.normal(size=300)), base[:, 1] ** 2], 1)
    p, d = p.astype(np.float32), d.astype(np.float32)

    got = best_dense_partners(p, d, Identity(2), Identity(2), batch_rows=64)
    partner, best, _ = reverse_reference(p, d, [0.5])
    np.testing.assert_array_equal(got.best_dense, partner)
    np.testing.assert_allclose(got.correlation, best, atol=1e-4)


# --- summaries ---


def summary_table() -> pd.DataFrame:
    nan = math.nan
    return pd.DataFrame(
        {
            "feature": np.arange(8),
            "dense_rate": [0.0, 0.1, 0.2, 0.2, 0.5, 0.05, 0.3, 0.0],
            "pruned_rate": [0.1, 0.0, 0.2, 0.1, 0.5, 0.05, 0.3, 0.0],
            "correlation": [nan, nan, 0.95, 0.65, 0.8, 0.49, 0.7, nan],
        }
    )


def test_survival_fractions_count_alive_dense_features():
    frame = survival_fractions(summary_table(), taus=(0.5, 0.7, 0.9))
    assert frame["n_alive"].tolist() == [6, 6, 6]
    assert frame["n_survived"].tolist() == [4, 3, 1]
    np.testing.assert_allclose(frame["survival"], [4 / 6, 3 / 6, 1 / 6])
    assert frame["n_undefined"].tolist() == [1] * 3 and frame["n_silent"].tolist() == [1] * 3
    nobody = summary_table().assign(dense_rate=0.0)
    assert survival_fractions(nobody, taus=(0.5,))["survival"].isna().all()


def test_activation_survival_by_dense_quintile_against_a_hand_split():
    rng = np.random.default_rng(0)
    rate = rng.choice([0.0, 0.01, 0.02, 0.05, 0.3], size=37)
    table = pd.DataFrame({"dense_rate": rate, "correlation": rng.uniform(-0.2, 1, size=37)})
    # brute force: alive features sorted by rate, ties by index, cut into five equal runs
    alive = sorted((r, j) for j, r in enumerate(rate) if r > 0)
    n = len(alive)
    labels = np.full(37, -1)
    for position, (_, j) in enumerate(alive):
        labels[j] = position * 5 // n + 1
    np.testing.assert_array_equal(firing_rate_quintiles(table["dense_rate"].to_numpy()), labels)
    per_q, _ = activation_quintile_rows(table, tau=0.5, n_boot=10, seed=0)
    for q in range(1, 6):
        members = labels == q
        row = per_q[per_q["quintile"] == q].iloc[0]
        assert row["n_features"] == members.sum()
        assert row["n_survived"] == (table["correlation"][members] >= 0.5).sum()


def _reverse_table(correlation, rate, varies=None) -> pd.DataFrame:
    n = len(correlation)
    correlation = np.asarray(correlation, dtype=float)
    return pd.DataFrame(
        {
            "feature": np.arange(n),
            "pruned_rate": rate,
            "varies": np.asarray(rate) > 0 if varies is None else varies,
            "best_dense": np.where(np.isnan(correlation), -1, 0),
            "correlation": correlation,
        }
    )


def test_a_reverse_view_read_back_from_its_table_counts_the_same():
    dense, pruned = activations(rows=50, seed=3)
    enc_p, enc_d = ReluLinear(6, 7, seed=2), ReluLinear(6, 5, seed=3)
    got = best_dense_partners(pruned, dense, enc_p, enc_d, [0.3, 0.6])
    back = ReverseMatch.from_table(got.table(), [0.3, 0.6])
    pd.testing.assert_frame_equal(back.counts(), got.counts())
    np.testing.assert_array_equal(back.new(), got.new())


def test_new_feature_table_sets_each_condition_beside_the_dense_floor():
    nan = np.nan
    reverse = {
        ("m", 1, "dense"): _reverse_table([0.9, 0.8, 0.4, nan], [0.1, 0.2, 0.3, 0.0]),
        # 3 alive: one below 0.5, one below 0.7 too; one alive but constant (undefined)
        ("m", 1, "wanda-0.5"): _reverse_table(
            [0.95, 0.6, 0.2, nan], [0.1, 0.2, 0.3, 0.4], varies=[True, True, True, False]
        ),
    }
    table = new_feature_table(reverse, [0.5, 0.7])
    assert table.columns[:4].tolist() == ["model", "layer", "condition", "tau"]
    got = table.set_index(["condition", "tau"])
    # dense: 3 alive, new = varies and below tau
    assert got.loc[("dense", 0.5), "n_new"] == 1 and got.loc[("dense", 0.7), "n_new"] == 1
    assert got.loc[("wanda-0.5", 0.5), "n_alive"] == 4
    assert got.loc[("wanda-0.5", 0.5), "n_new"] == 1  # the constant one is not new
    assert got.loc[("wanda-0.5", 0.7), "n_new"] == 2
    assert got.loc[("wanda-0.5", 0.7), "n_undefined"] == 1
    assert got.loc[("wanda-0.5", 0.7), "floor_new_fraction"] == pytest.approx(1 / 3)
    assert got.loc[("wanda-0.5", 0.7), "excess_over_floor"] == pytest.approx(2 / 4 - 1 / 3)
    assert got.loc[("dense", 0.5), "excess_over_floor"] == 0
