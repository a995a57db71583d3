from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from prunescope import matching
from prunescope.match_files import load_matches, save_matches
from prunescope.matching import (
    _greedy_accept,
    best_cosine,
    column_max,
    default_block_rows,
    greedy_partners,
    match_dictionaries,
    normalise_directions,
    survival_per_feature,
)
from prunescope.settings import PAPER_TAUS

TAUS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def random_dictionary(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def planted_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """B holds noisy copies of 30 of A's 40 features (noise from tiny to large), plus
    20 unrelated ones, so every metric lands strictly between 0 and 1."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((40, 16)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    copied = rng.permutation(40)[:30]
    noise = np.linspace(0.05, 1.2, 30, dtype=np.float32)[:, None]
    copies = a[copied] + noise * rng.standard_normal((30, 16)).astype(np.float32) / 4
    b = np.concatenate([copies, rng.standard_normal((20, 16)).astype(np.float32)])
    return a, b[rng.permutation(50)]


def dense_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64 = a.astype(np.float64) / np.linalg.norm(a, axis=1, keepdims=True)
    b64 = b.astype(np.float64) / np.linalg.norm(b, axis=1, keepdims=True)
    return a64 @ b64.T


def brute_greedy(sim: np.ndarray, tau: float) -> dict[int, int]:
    """Greedy over the full dense matrix, restricted to pairs >= tau, ties lower index."""
    pairs = sorted(
        ((-sim[i, j], i, j) for i in range(sim.shape[0]) for j in range(sim.shape[1])),
    )
    used_a, used_b, matched = set(), set(), {}
    for neg_cos, i, j in pairs:
        if -neg_cos < tau:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matched[i] = j
    return matched


def max_cardinality(sim: np.ndarray, tau: float) -> int:
    graph = (sim >= tau).astype(np.float64)
    rows, cols = linear_sum_assignment(graph, maximize=True)
    return int(graph[rows, cols].sum())


@pytest.fixture(params=["random", "planted"])
def pair(request):
    if request.param == "random":
        return random_dictionary(40, 8, 1), random_dictionary(50, 8, 2)
    return planted_pair()


def test_best_partners_and_rates_match_brute_force(pair):
    a, b = pair
    sim = dense_cosine(a, b)
    result = match_dictionaries(a, b, TAUS, device="cpu")
    np.testing.assert_array_equal(result.a_best, sim.argmax(axis=1))
    np.testing.assert_array_equal(result.b_best, sim.argmax(axis=0))
    np.testing.assert_allclose(result.a_best_cos, sim.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(result.b_best_cos, sim.max(axis=0), atol=1e-6)
    mutual = np.array([sim[:, sim[i].argmax()].argmax() == i for i in range(len(a))])
    np.testing.assert_array_equal(result.mnn, mutual)
    for t, row in enumerate(result.rates()):
        tau = TAUS[t]
        one_way = int((sim.max(axis=1) >= tau).sum())
        mnn = int((mutual & (sim.max(axis=1) >= tau)).sum())
        greedy = brute_greedy(sim, tau)
        assert row["tau"] == tau and row["n_a"] == 40 and row["n_b"] == 50
        assert (row["one_way_count"], row["mnn_count"], row["greedy_count"]) == (
            one_way,
            mnn,
            len(greedy),
        )
        assert row["one_way"] == pytest.approx(one_way / 40)
        assert row["mnn"] == pytest.approx(mnn / 40)
        assert row["greedy"] == pytest.approx(len(greedy) / 40)
        expected = np.full(40, -1)
        expected[list(greedy)] = list(greedy.values())
        np.testing.assert_array_equal(result.greedy_partner[t], expected)


def test_planted_rates_are_not_trivial():
    a, b = planted_pair()
    rate = match_dictionaries(a, b, [0.7], device="cpu").rates()[0]
    assert 0 < rate["mnn"] < rate["one_way"] < 1
    assert 0 < rate["greedy"] < 1


@pytest.mark.parametrize("block_rows", [1, 3, 7, 16, 40, 1000])
def test_blocked_equals_unblocked(pair, block_rows):
    a, b = pair
    whole = match_dictionaries(a, b, TAUS, block_rows=len(a), device="cpu")
    blocked = match_dictionaries(a, b, TAUS, block_rows=block_rows, device="cpu")
    for name in ("a_best", "b_best", "mnn", "greedy_partner"):
        np.testing.assert_array_equal(getattr(blocked, name), getattr(whole, name))
    np.testing.assert_allclose(blocked.a_best_cos, whole.a_best_cos, atol=1e-6)
    np.testing.assert_allclose(blocked.b_best_cos, whole.b_best_cos, atol=1e-6)


def test_one_greedy_pass_equals_greedy_per_tau(pair):
    """The prefix claim: greedy on pairs >= tau equals the one-pass matching cut at tau."""
    a, b = pair
    sim = dense_cosine(a, b).astype(np.float32)
    rows, cols = np.nonzero(sim >= -1.0)
    cos = sim[rows, cols]
    one_pass = greedy_partners(rows, cols, cos, np.array(TAUS), 40, 50)
    for t, tau in enumerate(TAUS):
        keep = cos >= np.float32(tau)
        alone = greedy_partners(rows[keep], cols[keep], cos[keep], np.array([tau]), 40, 50)
        np.testing.assert_array_equal(one_pass[t], alone[0])


def test_greedy_ignores_candidate_order(pair):
    a, b = pair
    sim = dense_cosine(a, b).astype(np.float32)
    sim[3, :] = sim[3, 0]  # exact ties across a whole row
    rows, cols = np.nonzero(sim >= 0.3)
    cos = sim[rows, cols]
    shuffled = np.random.default_rng(0).permutation(len(rows))
    expected = greedy_partners(rows, cols, cos, np.array(TAUS), 40, 50)
    got = greedy_partners(rows[shuffled], cols[shuffled], cos[shuffled], np.array(TAUS), 40, 50)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_chunked_greedy_equals_plain_loop(chunk):
    rng = np.random.default_rng(chunk)
    rows, cols = rng.integers(0, 30, 500), rng.integers(0, 20, 500)
    used_a, used_b, plain = set(), set(), []
    for position, (i, j) in enumerate(zip(rows, cols, strict=True)):
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            plain.append(position)
    np.testing.assert_array_equal(_greedy_accept(rows, cols, 30, 20, chunk=chunk), plain)


def test_provable_orderings(pair):
    """greedy <= one-way and MNN <= one-way (a matched feature's best cos is >= tau);
    every MNN pair >= tau is a greedy pair (no earlier pair in the greedy order can use
    either feature), so MNN <= greedy; greedy is a maximal matching, so it lies between
    half the maximum-cardinality matching of the graph of pairs >= tau and that maximum."""
    a, b = pair
    sim = dense_cosine(a, b)
    result = match_dictionaries(a, b, TAUS, device="cpu")
    for t, row in enumerate(result.rates()):
        assert row["greedy_count"] <= row["one_way_count"]
        assert row["mnn_count"] <= row["greedy_count"]
        surviving = survival_per_feature(result, TAUS[t])
        np.testing.assert_array_equal(result.greedy_partner[t][surviving], result.a_best[surviving])
        best = max_cardinality(sim, TAUS[t])
        assert best / 2 <= row["greedy_count"] <= best


def test_self_match_is_perfect():
    a = random_dictionary(60, 12, 3)
    taus = (0.5, 0.7, 0.9, 1 - 1e-6)
    result = match_dictionaries(a, a, taus, block_rows=7, device="cpu")
    np.testing.assert_array_equal(result.a_best, np.arange(60))
    for row in result.rates():
        assert row["one_way"] == row["mnn"] == row["greedy"] == 1.0


def test_ties_go_to_lower_index():
    e0 = [1.0, 0.0]
    result = match_dictionaries([e0, e0], [[0.0, 1.0], e0, e0], [0.5], block_rows=1, device="cpu")
    np.testing.assert_array_equal(result.a_best, [1, 1])
    np.testing.assert_array_equal(result.b_best[1:], [0, 0])
    np.testing.assert_array_equal(result.mnn, [True, False])
    np.testing.assert_array_equal(result.greedy_partner[0], [1, 2])


def test_scale_and_dtype_do_not_matter():
    a, b = planted_pair(4)
    base = match_dictionaries(a, b, TAUS, device="cpu")
    scaled = match_dictionaries(
        torch.from_numpy(a * 3.0).double(),
        torch.from_numpy(b * np.linspace(0.1, 5, 50, dtype=np.float32)[:, None]),
        TAUS,
        device=torch.device("cpu"),
    )
    np.testing.assert_array_equal(scaled.greedy_partner, base.greedy_partner)
    np.testing.assert_allclose(scaled.a_best_cos, base.a_best_cos, atol=1e-6)


def test_normalise_directions_gives_unit_rows():
    rows = normalise_directions(random_dictionary(5, 4, 0))
    assert rows.dtype == torch.float32
    np.testing.assert_allclose(rows.norm(dim=1).numpy(), 1.0, atol=1e-6)


def test_default_block_is_about_256_mb():
    rows = default_block_rows(18_432, 18_432)
    assert 200e6 <= rows * 18_432 * 4 <= 270e6
    assert default_block_rows(10, 50) == 10


@pytest.mark.parametrize(
    "dec_a, dec_b, taus, match",
    [
        (np.ones((3, 4)), np.ones((3, 5)), [0.7], "different widths"),
        (np.ones((3, 4)), np.zeros((0, 4)), [0.7], "dictionary B"),
        (np.array([[1.0, np.nan]]), np.ones((2, 2)), [0.7], "NaN"),
        (np.ones((2, 2)), np.array([[0.0, 0.0], [-np.inf, 1.0]]), [0.7], "B contains NaN or Inf"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), np.ones((2, 2)), [0.7], "row 1 has zero norm"),
        (np.ones((3, 4)), np.ones((3, 4)), [], "at least one"),
        (np.ones((3, 4)), np.ones((3, 4)), [0.7, 1.5], r"\[-1, 1\]"),
    ],
)
def test_bad_input_is_named(dec_a, dec_b, taus, match):
    with pytest.raises(ValueError, match=match):
        match_dictionaries(dec_a, dec_b, taus, device="cpu")


def test_hdf5_round_trip(tmp_path):
    a, b = planted_pair(5)
    result = match_dictionaries(a, b, PAPER_TAUS, device="cpu")
    attrs = {
        "model": "gemma-2-2b",
        "layer": 12,
        "condition_a": "dense",
        "seeds": [0, 1],
        "names": ["a", "b"],
        "extra": {"sparsity": 0.5},
    }
    path = tmp_path / "m" / "pair.h5"
    save_matches(result, path, attrs)
    assert not (tmp_path / "m" / "pair.h5.partial").exists()
    loaded = load_matches(path)
    for name in ("a_best", "a_best_cos", "b_best", "b_best_cos", "mnn", "greedy_partner", "taus"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert loaded.attrs == attrs
    assert loaded.rates() == result.rates()
    np.testing.assert_array_equal(best_cosine(loaded), result.a_best_cos)


def test_load_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        load_matches(tmp_path / "nothing.h5")
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="broken.h5"):
        load_matches(broken)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    a, b = planted_pair(6)
    cpu = match_dictionaries(a, b, TAUS, device="cpu")
    cuda = match_dictionaries(a, b, TAUS, block_rows=9, device="cuda")
    np.testing.assert_array_equal(cuda.greedy_partner, cpu.greedy_partner)
    np.testing.assert_array_equal(cuda.mnn, cpu.mnn)
    np.testing.assert_allclose(cuda.a_best_cos, cpu.a_best_cos, atol=1e-5)


def test_greedy_receives_only_pairs_at_or_above_lowest_tau(monkeypatch, pair):
    """Greedy sorts the candidate pairs, never all n_a x n_b of them."""
    a, b = pair
    received = []
    original = matching.greedy_partners

    def recording(rows, cols, cos, taus, n_a, n_b):
        received.append((np.asarray(rows), np.asarray(cols), np.asarray(cos)))
        return original(rows, cols, cos, taus, n_a, n_b)

    monkeypatch.setattr(matching, "greedy_partners", recording)
    match_dictionaries(a, b, (0.9, 0.5, 0.7), block_rows=7, device="cpu")
    ((rows, cols, cos),) = received
    sim = dense_cosine(a, b)
    expected = set(zip(*np.nonzero(sim >= 0.5), strict=True))
    assert 0 < len(expected) < sim.size / 4
    assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == expected
    assert len(rows) == len(expected)
    np.testing.assert_allclose(cos, sim[rows, cols], atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 5), (7, 3), (64, 9), (100, 17)])
@pytest.mark.parametrize("chunk", [1, 3, 8, 32, 200])
def test_column_max_finds_the_first_maximum_with_ties(shape, chunk):
    rng = np.random.default_rng(shape[0] * chunk)
    matrix = torch.from_numpy(rng.integers(0, 4, shape).astype(np.float32))
    values, indices = column_max(matrix, chunk=chunk)
    expected = matrix.numpy().max(axis=0)
    first = np.array([np.flatnonzero(col == col.max())[0] for col in matrix.numpy().T])
    np.testing.assert_array_equal(values.numpy(), expected)
    np.testing.assert_array_equal(indices.numpy(), first)


def test_column_max_names_bad_input():
    with pytest.raises(ValueError, match="matrix with rows"):
        column_max(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="chunk"):
        column_max(torch.zeros(2, 3), chunk=0)


def test_a_decoder_row_in_model_space_is_what_the_feature_adds_to_the_stream():
    """Brute force: decode a unit code of feature i and of nothing, undo the standardisation,
    and take the difference; that is W_dec[i] * std."""
    from prunescope.matching import decoder_in_space
    from prunescope.sae import TopKSAE

    g = torch.Generator().manual_seed(0)
    d_model, d_sae = 6, 10
    sae = TopKSAE(
        d_model,
        d_sae,
        k=2,
        mean=torch.randn(d_model, generator=g),
        std=torch.rand(d_model, generator=g) + 0.1,
        generator=g,
    )
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(d_model, generator=g))
        nothing = sae.denormalise(
            sae.decode(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long))
        )
        for i in range(d_sae):
            one = sae.denormalise(sae.decode(torch.ones(1, 1), torch.tensor([[i]])))
            direction = decoder_in_space(sae.W_dec, sae.std, "model")[i]
            expected = (one - nothing)[0]
            torch.testing.assert_close(direction, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(decoder_in_space(sae.W_dec, sae.std, "normalised"), sae.W_dec)
    with pytest.raises(ValueError, match="match space 'raw' is not one of"):
        decoder_in_space(sae.W_dec, sae.std, "raw")
