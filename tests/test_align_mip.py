"""Per-neuron best-subset MIP checked against brute force on tiny rows."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from prunescope.align import mip
from prunescope.align.mip import MipSettings, heuristics, search, supports

ROOT = Path(__file__).resolve().parents[1]


def _instance(seed: int, d: int, kind: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """(w, C0) with C0 well-conditioned ("random"), ill-conditioned or singular."""
    rng = np.random.default_rng(seed)
    C0 = rng.normal(size=(d, d)) / np.sqrt(d) + 0.5 * np.eye(d)
    if kind == "ill":
        C0 = C0 @ np.diag(np.logspace(0, -3, d))
    elif kind == "singular":
        C0[1] = C0[0]
    return rng.normal(size=d), C0


def _feasible(support: np.ndarray, keep: int, block) -> bool:
    if support.sum() > keep:
        return False
    return block is None or bool((support.reshape(-1, block[1]).sum(1) <= block[0]).all())


def _brute_force(w, Q, keep, block) -> float:
    """Smallest refitted objective over every feasible support of every size up to keep."""
    d = w.size
    best = np.inf
    for size in range(keep + 1):
        for S in itertools.combinations(range(d), size):
            support = np.zeros(d, dtype=bool)
            support[list(S)] = True
            if _feasible(support, keep, block):
                best = min(best, mip.refit_on_support(w, Q, support)[1])
    return best


def _magnitude_mask(w: np.ndarray, keep: int, block) -> np.ndarray:
    mask = np.zeros(w.size, dtype=bool)
    if block is None:
        mask[np.argsort(-np.abs(w), kind="stable")[:keep]] = True
        return mask
    n, m = block
    for start in range(0, w.size, m):
        mask[start + np.argsort(-np.abs(w[start : start + m]), kind="stable")[:n]] = True
    return mask


def _random_mask(rng, d: int, keep: int, block) -> np.ndarray:
    mask = np.zeros(d, dtype=bool)
    if block is None:
        mask[rng.choice(d, size=keep, replace=False)] = True
        return mask
    n, m = block
    for start in range(0, d, m):
        mask[start + rng.choice(m, size=n, replace=False)] = True
    return mask


# --------------------------------------------------------------------------- refits


@pytest.mark.parametrize("kind", ["random", "ill"])
def test_refit_matches_least_squares_on_feature_space(kind):
    w, C0 = _instance(0, 7, kind)
    Q = C0 @ C0.T
    support = np.array([1, 0, 1, 1, 0, 0, 1], dtype=bool)
    v, objective = mip.refit_on_support(w, Q, support)
    S = np.flatnonzero(support)
    expected = np.zeros(7)
    expected[S] = np.linalg.lstsq(C0[S].T, w @ C0, rcond=None)[0]
    expected_objective = np.sum(((w - expected) @ C0) ** 2)
    np.testing.assert_allclose(objective, expected_objective, rtol=1e-8)
    assert np.all(v[~support] == 0.0)
    if kind == "random":
        np.testing.assert_allclose(v, expected, atol=1e-10)


def test_refit_on_singular_support_still_minimises():
    w, C0 = _instance(1, 6, "singular")
    Q = C0 @ C0.T
    support = np.array([1, 1, 1, 0, 1, 0], dtype=bool)  # rows 0 and 1 of C0 coincide
    _, objective = mip.refit_on_support(w, Q, support)
    S = np.flatnonzero(support)
    best = np.zeros(6)
    best[S] = np.linalg.lstsq(C0[S].T, w @ C0, rcond=None)[0]
    np.testing.assert_allclose(objective, np.sum(((w - best) @ C0) ** 2), rtol=1e-8, atol=1e-12)


def test_feature_refit_refits_every_row():
    rng = np.random.default_rng(2)
    _, C0 = _instance(2, 8)
    W1 = rng.normal(size=(5, 8))
    mask = rng.random((5, 8)) < 0.5
    refit = mip.feature_refit(W1, C0, mask)
    Q = C0 @ C0.T
    for i in range(5):
        np.testing.assert_allclose(refit[i], mip.refit_on_support(W1[i], Q, mask[i])[0], atol=1e-9)


# --------------------------------------------------------------------------- enumeration


@pytest.mark.parametrize(
    ("d", "keep", "block"), [(8, 3, None), (8, 5, None), (8, 3, (2, 4)), (8, 6, (2, 4))]
)
def test_count_supports_matches_brute_force(d, keep, block):
    k = mip.max_support_size(d, keep, block)
    candidates = itertools.combinations(range(d), k)
    expected = sum(
        _feasible(np.isin(np.arange(d), S), keep, block) for S in candidates
    )  # fmt: skip
    assert mip.count_supports(d, keep, block) == expected
    assert sum(1 for _ in supports._iter_supports(d, k, block)) == expected


@pytest.mark.parametrize("block", [None, (2, 4)])
@pytest.mark.parametrize("keep", [3, 5])
def test_enumeration_equals_brute_force(block, keep):
    w, C0 = _instance(3 + keep, 8)
    Q = C0 @ C0.T
    mask, weights, objective = mip.enumerate_best_subset(w, Q, keep, block)
    assert _feasible(mask, keep, block)
    assert mask.sum() == mip.max_support_size(8, keep, block)
    assert np.all(weights[~mask] == 0.0)
    np.testing.assert_allclose(objective, _brute_force(w, Q, keep, block), rtol=1e-10)
    np.testing.assert_allclose(objective, mip.refit_on_support(w, Q, mask)[1], rtol=1e-12)


# --------------------------------------------------------------------------- greedy and SCIP


@pytest.mark.parametrize("seed", range(5))
def test_single_greedy_steps_are_exact(seed):
    # one backward step from the full support, or one forward step from the empty one, must
    # pick the best support of its size: this checks both closed-form step scores
    w, C0 = _instance(60 + seed, 7, "ill" if seed % 2 else "random")
    Q = C0 @ C0.T
    for keep, step in ((6, heuristics._backward_elimination), (1, heuristics._forward_selection)):
        support = step(w, Q, keep, None)
        assert support.sum() == keep
        np.testing.assert_allclose(
            mip.refit_on_support(w, Q, support)[1],
            _brute_force(w, Q, keep, None),
            rtol=1e-9,
            atol=1e-9 * (w @ Q @ w),  # ill-conditioned rows reach objectives near rounding
        )


@pytest.mark.parametrize(
    ("d", "keep", "block"), [(8, 3, None), (12, 5, (2, 4)), (12, 9, (2, 4)), (12, 12, None)]
)
def test_greedy_support_is_feasible_and_never_beaten_by_solver_answer(d, keep, block):
    w, C0 = _instance(d + keep, d)
    Q = C0 @ C0.T
    greedy = mip.greedy_backward(w, Q, keep, block)
    assert _feasible(greedy, keep, block)
    assert greedy.sum() == mip.max_support_size(d, keep, block)
    greedy_objective = mip.refit_on_support(w, Q, greedy)[1]
    for limit in (0, 10**6):
        solution = mip.solve_neuron(
            w, Q, keep, block, settings=MipSettings(time_limit=20, enumerate_limit=limit)
        )
        assert _feasible(solution.mask, keep, block)
        assert solution.objective <= greedy_objective * (1 + 1e-12)


def test_scip_solver_on_request_reaches_the_enumerated_optimum():
    w, C0 = _instance(10, 10, "random")
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, 5)
    settings = MipSettings(time_limit=30, gap=1e-6, enumerate_limit=0, solver="scip")
    solution = mip.solve_neuron(w, Q, 5, settings=settings)
    assert solution.solver == "scip" and solution.status == "optimal"
    np.testing.assert_allclose(solution.objective, optimum, rtol=1e-6)
    with pytest.raises(ValueError, match="'gurobi' is not one of"):
        MipSettings(solver="gurobi")


@pytest.mark.parametrize(
    ("seed", "kind", "block"),
    [
        (10, "random", None),
        (11, "random", (2, 4)),
        (12, "ill", None),
        (13, "ill", (2, 4)),
        (14, "singular", None),
        (15, "random", None),
    ],
)
def test_solver_reaches_the_enumerated_optimum(seed, kind, block):
    d, keep = (12, 6) if seed % 2 else (10, 5)
    if block is not None:
        d = 12
    w, C0 = _instance(seed, d, kind)
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, keep, block)
    settings = MipSettings(time_limit=30, gap=1e-6, enumerate_limit=0)
    solution = mip.solve_neuron(w, Q, keep, block, settings=settings)
    assert solution.solver == ("scip" if kind == "singular" else "branch-and-bound")
    assert solution.status == "optimal"
    assert _feasible(solution.mask, keep, block)
    np.testing.assert_allclose(solution.objective, optimum, rtol=1e-6)
    assert solution.bound <= solution.objective
    assert solution.gap <= 1e-5
    np.testing.assert_allclose(
        solution.weights, mip.refit_on_support(w, Q, solution.mask)[0], atol=1e-12
    )


# --------------------------------------------------------------------------- branch and bound


def _rise(w, Q, support, drops) -> float:
    """Exact rise of the refitted objective from dropping ``drops`` off ``support``."""
    smaller = support.copy()
    smaller[list(drops)] = False
    return mip.refit_on_support(w, Q, smaller)[1] - mip.refit_on_support(w, Q, support)[1]


@pytest.mark.parametrize("kind", ["random", "ill"])
def test_drop_costs_match_refits(kind):
    w, C0 = _instance(70, 7, kind)
    Q = C0 @ C0.T
    support = np.array([1, 1, 0, 1, 1, 1, 0], dtype=bool)
    S = np.flatnonzero(support)
    v, _ = mip.refit_on_support(w, Q, support)
    single, pair = mip.drop_costs(np.linalg.inv(Q[np.ix_(S, S)]), v[S])
    scale = w @ Q @ w
    for a, j in enumerate(S):
        expected = _rise(w, Q, support, [j])
        np.testing.assert_allclose(single[a], expected, rtol=1e-7, atol=1e-12 * scale)
        for b, i in enumerate(S):
            if i == j:
                assert pair[b, a] == np.inf
                continue
            after_j = _rise(w, Q, support, [i, j]) - _rise(w, Q, support, [j])
            np.testing.assert_allclose(pair[b, a], after_j, rtol=1e-6, atol=1e-10 * scale)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_lookahead_bounds_never_exceed_the_true_rise(r):
    w, C0 = _instance(71, 7, "ill")
    Q = C0 @ C0.T
    support = np.ones(7, dtype=bool)
    single, pair = mip.drop_costs(np.linalg.inv(Q), w)
    bounds = mip.lookahead_bounds(single, pair, r)
    tight = 0
    for drops in itertools.combinations(range(7), r):
        rise = _rise(w, Q, support, drops)
        assert all(bounds[j] <= rise * (1 + 1e-9) + 1e-12 for j in drops)
        tight += np.isclose(max(bounds[j] for j in drops), rise, rtol=1e-9)
    if r == 1:
        assert tight == 7  # a single drop is priced exactly


@pytest.mark.parametrize(
    ("d", "keep", "block", "kind"),
    [
        (10, 5, None, "random"),
        (10, 3, None, "ill"),
        (12, 7, None, "ill"),
        (12, 6, (2, 4), "ill"),
        (12, 4, (2, 4), "random"),  # fewer than the blocks allow: blocks and count both bind
        (12, 3, (1, 4), "ill"),
        (12, 9, (3, 4), "random"),
    ],
)
def test_branch_and_bound_equals_enumeration(d, keep, block, kind):
    w, C0 = _instance(d * keep, d, kind)
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, keep, block)
    k = mip.max_support_size(d, keep, block)
    start = heuristics._magnitude_support(w, k, block)
    found = mip.branch_and_bound(w, Q, keep, block, incumbent=start)
    assert found.complete
    assert _feasible(found.mask, keep, block) and found.mask.sum() == k
    np.testing.assert_allclose(found.objective, optimum, rtol=1e-9, atol=1e-14 * (w @ Q @ w))
    assert found.bound <= found.objective


def test_interrupted_search_keeps_a_valid_bound():
    w, C0 = _instance(72, 12, "ill")
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, 6)
    start = _magnitude_mask(w, 6, None)
    found = mip.branch_and_bound(w, Q, 6, incumbent=start, time_limit=0.0)
    assert not found.complete
    assert found.bound <= optimum <= found.objective
    np.testing.assert_allclose(found.objective, mip.refit_on_support(w, Q, start)[1])


@pytest.mark.parametrize(("d", "keep", "block"), [(14, 7, None), (16, 8, (2, 4))])
def test_node_limit_stops_the_search_at_exactly_that_many_nodes(d, keep, block):
    w, C0 = _instance(90 + d, d, "ill")
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, keep, block)
    start = _magnitude_mask(w, keep, block)
    full = mip.branch_and_bound(w, Q, keep, block, incumbent=start)
    assert full.complete and full.nodes > 4
    # a search that needs n nodes finishes under a limit of n, the same as without one
    exact = mip.branch_and_bound(w, Q, keep, block, incumbent=start, node_limit=full.nodes)
    assert exact.complete and exact.nodes == full.nodes
    np.testing.assert_array_equal(exact.mask, full.mask)
    assert exact.objective == full.objective and exact.bound == full.bound
    for limit in (1, 2, full.nodes // 2, full.nodes - 1):
        cut = mip.branch_and_bound(w, Q, keep, block, incumbent=start, node_limit=limit)
        assert not cut.complete and cut.nodes == limit
        assert _feasible(cut.mask, keep, block)
        assert cut.bound <= optimum * (1 + 1e-9) and optimum <= cut.objective * (1 + 1e-9)


def test_search_with_no_node_left_still_bounds_the_optimum():
    w, C0 = _instance(74, 12, "ill")
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, 6)
    start = _magnitude_mask(w, 6, None)
    spent = search._Budget(node_cap=0)
    found = search._DropSearch(w, Q, 6, None, start, 0.0, spent).run()
    assert not found.complete and found.nodes == 0 and spent.nodes == 0
    assert 0.0 <= found.bound <= optimum <= found.objective


def test_branch_and_bound_rejects_bad_incumbents_and_singular_forms():
    w, C0 = _instance(73, 8)
    Q = C0 @ C0.T
    with pytest.raises(ValueError, match="incumbent"):
        mip.branch_and_bound(w, Q, 3, incumbent=np.ones(8, dtype=bool))
    w, C0 = _instance(73, 8, "singular")
    with pytest.raises(ValueError, match="positive definite"):
        mip.branch_and_bound(w, C0 @ C0.T, 3)


# --------------------------------------------------------------------------- local improvement


@pytest.mark.parametrize("block", [None, (2, 4)])
def test_improvement_never_worsens_and_stays_feasible(block):
    w, C0 = _instance(80, 16, "ill")
    Q = C0 @ C0.T
    start = _magnitude_mask(w, 8, block)
    better = mip.improve_support(w, Q, start, block, rounds=6, window=8, seed=1)
    assert _feasible(better, 8, block) and better.sum() == 8
    assert mip.refit_on_support(w, Q, better)[1] <= mip.refit_on_support(w, Q, start)[1]
    again = mip.improve_support(w, Q, start, block, rounds=6, window=8, seed=1)
    np.testing.assert_array_equal(better, again)


@pytest.mark.parametrize("block", [None, (2, 4)])
def test_node_limited_improvement_repeats_and_never_worsens(block):
    w, C0 = _instance(83, 16, "ill")
    Q = C0 @ C0.T
    start = _magnitude_mask(w, 8, block)
    runs = [
        mip.improve_support(w, Q, start, block, rounds=10**6, window=8, node_limit=12)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert _feasible(runs[0], 8, block) and runs[0].sum() == 8
    assert mip.refit_on_support(w, Q, runs[0])[1] <= mip.refit_on_support(w, Q, start)[1]


@pytest.mark.parametrize("block", [None, (2, 4)])
def test_improvement_with_a_window_over_everything_is_exact(block):
    w, C0 = _instance(81, 12, "ill")
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, 6, block)
    start = _magnitude_mask(w, 6, block)
    best = mip.improve_support(w, Q, start, block, rounds=1, window=12)
    np.testing.assert_allclose(mip.refit_on_support(w, Q, best)[1], optimum, rtol=1e-9)


def test_unfinished_solve_reports_a_valid_bound_and_beats_the_warm_start():
    rng = np.random.default_rng(82)
    d = 40
    C0 = rng.normal(size=(d, d)) @ np.diag(np.logspace(0, -2, d)) + 0.01 * np.eye(d)
    w = rng.normal(size=d)
    Q = C0 @ C0.T
    warm = heuristics._warm_start(w, Q, 20, None)
    settings = MipSettings(time_limit=0.4, enumerate_limit=0, rounds=4)
    solution = mip.solve_neuron(w, Q, 20, settings=settings)
    assert solution.solver == "branch-and-bound"
    assert 0.0 <= solution.bound <= solution.objective
    assert solution.objective <= mip.refit_on_support(w, Q, warm)[1]
    if solution.status == "timelimit":
        assert solution.gap > 0


def _unfinishable_row() -> tuple[np.ndarray, np.ndarray]:
    """(w, Q) of 40 entries keeping 20, far too many supports to finish in a few dozen nodes."""
    rng = np.random.default_rng(82)
    d = 40
    C0 = rng.normal(size=(d, d)) @ np.diag(np.logspace(0, -2, d)) + 0.01 * np.eye(d)
    return rng.normal(size=d), C0 @ C0.T


def test_node_limited_solve_repeats_exactly_without_a_time_limit():
    w, Q = _unfinishable_row()
    settings = MipSettings(time_limit=np.inf, node_limit=40, enumerate_limit=0)
    runs = [mip.solve_neuron(w, Q, 20, settings=settings) for _ in range(2)]
    assert runs[0].status == "timelimit" and runs[0].nodes <= 40
    np.testing.assert_array_equal(runs[0].mask, runs[1].mask)
    np.testing.assert_array_equal(runs[0].weights, runs[1].weights)
    assert runs[0].objective == runs[1].objective and runs[0].bound == runs[1].bound
    assert runs[0].nodes == runs[1].nodes and runs[0].status == runs[1].status


@pytest.mark.parametrize("block", [None, (2, 4)])
def test_node_limited_solve_stays_within_the_limit_with_valid_bounds(block):
    w, C0 = _instance(93, 16, "ill")
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, 8, block)
    statuses = set()
    for limit in (1, 2, 3, 5, 8, 13, 21, 34):
        settings = MipSettings(time_limit=np.inf, node_limit=limit, enumerate_limit=0)
        solution = mip.solve_neuron(w, Q, 8, block, settings=settings)
        statuses.add(solution.status)
        assert solution.nodes <= limit
        assert _feasible(solution.mask, 8, block)
        assert solution.bound <= optimum * (1 + 1e-9)
        assert optimum <= solution.objective * (1 + 1e-9)
    assert "timelimit" in statuses  # the small limits did stop the search


@pytest.mark.parametrize("block", [None, (2, 4)])
def test_a_node_limit_that_never_binds_changes_nothing(block):
    w, C0 = _instance(94, 16, "ill")
    Q = C0 @ C0.T
    settings = MipSettings(time_limit=np.inf, enumerate_limit=0)
    free = mip.solve_neuron(w, Q, 8, block, settings=settings)
    assert free.status == "optimal" and free.nodes > 0
    # the first search may use half of the limit, enough to finish
    settings = MipSettings(time_limit=np.inf, node_limit=2 * free.nodes, enumerate_limit=0)
    limited = mip.solve_neuron(w, Q, 8, block, settings=settings)
    np.testing.assert_array_equal(limited.mask, free.mask)
    assert limited.objective == free.objective and limited.bound == free.bound
    assert limited.nodes == free.nodes and limited.status == "optimal"


def test_node_limited_scip_solve_keeps_a_valid_bound():
    w, C0 = _instance(10, 10, "random")
    Q = C0 @ C0.T
    _, _, optimum = mip.enumerate_best_subset(w, Q, 5)
    settings = MipSettings(time_limit=np.inf, node_limit=1, enumerate_limit=0, solver="scip")
    solution = mip.solve_neuron(w, Q, 5, settings=settings)
    assert solution.solver == "scip" and solution.status in ("optimal", "timelimit")
    assert solution.nodes <= 1
    assert solution.bound <= optimum * (1 + 1e-6) and optimum <= solution.objective * (1 + 1e-9)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_node_limit_must_be_a_positive_integer(limit):
    with pytest.raises(ValueError, match="node_limit"):
        MipSettings(node_limit=limit)


def test_settings_refuse_a_bad_value_by_name():
    with pytest.raises(ValueError, match="threads must be at least 1"):
        MipSettings(threads=0)
    with pytest.raises(ValueError, match="node_limit must be a positive integer"):
        MipSettings(node_limit=0)
    with pytest.raises(ValueError, match="MIP solver 'cplex'"):
        MipSettings(solver="cplex")


def test_trivial_rows_skip_the_solver():
    w, C0 = _instance(20, 8)
    Q = C0 @ C0.T
    settings = MipSettings(enumerate_limit=0)
    zero = mip.solve_neuron(np.zeros(8), Q, 3, settings=settings)
    assert zero.objective == 0.0 and not zero.weights.any() and zero.mask.sum() == 3
    sparse = np.where(np.arange(8) < 2, w, 0.0)
    exact = mip.solve_neuron(sparse, Q, 3, settings=settings)
    assert exact.status == "optimal" and exact.objective < 1e-20
    np.testing.assert_allclose(exact.weights, sparse, atol=1e-12)


# --------------------------------------------------------------------------- layer


@pytest.mark.parametrize("block", [None, (2, 4)])
def test_layer_beats_magnitude_and_random_masks(block):
    rng = np.random.default_rng(30)
    d, keep = 8, 4
    _, C0 = _instance(30, d, "ill")
    W1 = rng.normal(size=(d, d))
    _, weights, solutions = mip.solve_layer(W1, C0, keep, block, progress=False)
    mip_error = np.sum(((W1 - weights) @ C0) ** 2, axis=1)
    np.testing.assert_allclose(mip_error, [s.objective for s in solutions], rtol=1e-8)
    rivals = [np.stack([_magnitude_mask(w, keep, block) for w in W1])]
    rivals += [np.stack([_random_mask(rng, d, keep, block) for _ in W1]) for _ in range(20)]
    for mask in rivals:
        rival_error = np.sum(((W1 - mip.feature_refit(W1, C0, mask)) @ C0) ** 2, axis=1)
        assert np.all(mip_error <= rival_error * (1 + 1e-9))


def test_layer_is_deterministic_across_threads():
    rng = np.random.default_rng(40)
    _, C0 = _instance(40, 8)
    W1 = rng.normal(size=(4, 8))
    W1[2] = 0.0
    runs = [
        mip.solve_layer(
            W1, C0, 3, settings=MipSettings(enumerate_limit=0, threads=t), progress=False
        )
        for t in (1, 2)
    ]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_allclose(runs[0][1], runs[1][1], atol=1e-12)
    frame = mip.solutions_frame(runs[1][2])
    assert list(frame["neuron"]) == [0, 1, 2, 3]
    assert set(frame.columns) >= {"status", "solver", "objective", "bound", "gap", "nodes"}
    assert list(frame["nonzeros"]) == [3, 3, 3, 3]


def test_bad_input_is_rejected():
    w, C0 = _instance(50, 8)
    Q = C0 @ C0.T
    with pytest.raises(ValueError, match="block"):
        mip.solve_neuron(w, Q, 3, (2, 3))
    with pytest.raises(ValueError, match="Q must be"):
        mip.refit_on_support(w, Q[:4, :4], np.ones(8, dtype=bool))
    with pytest.raises(ValueError, match="keep"):
        mip.greedy_backward(w, Q, -1)
