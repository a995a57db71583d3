from __future__ import annotations

import numpy as np
import pytest

from prunescope.align.codes import (
    code_counts,
    code_persistence,
    code_signs,
    four_p_positive,
    output_margin,
    pattern_name,
)

# Two clauses over 8 literals, deliberately not contiguous.
CLAUSES = np.array([[0, 2, 4, 6], [1, 3, 5, 7]])


def hand_built() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five neurons with known codes on CLAUSES (columns 0,2,4,6 and 1,3,5,7)."""
    C1 = np.array(
        [
            # clause 0: 4 positive; clause 1: 4 positive
            [1.0, 2.0, 0.5, 0.1, 3.0, 1.0, 0.2, 0.3],
            # clause 0: 3P1N (one weight exactly 0); clause 1: 0 positive
            [0.7, -1.0, 0.0, -2.0, 0.4, -0.1, 0.9, -0.5],
            # clause 0: 4 positive; clause 1: 2P2N
            [0.1, 1.0, 0.2, -1.0, 0.3, 2.0, 0.4, -3.0],
            # clause 0: 1P3N; clause 1: 4 positive (neuron with bias exactly 0)
            [0.5, 1.0, -0.2, 1.0, -0.3, 1.0, -0.4, 1.0],
            # clause 0: 4 positive; clause 1: 3P1N (margin exactly 0)
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0],
        ]
    )
    W2 = np.array(
        [
            [-1.0, 0.0, 0.5, -0.3, 0.2],  # towards the negative class
            [1.0, -2.0, 0.1, 0.7, 0.2],  # towards the positive class
        ]
    )  # margins: 2, -2, -0.4, 1, 0
    b1 = np.array([-0.5, -1.0, -0.2, 0.0, -1.0])
    return C1, W2, b1


def brute_force_counts(C1, W2, b1, clauses) -> dict[str, int]:
    counts: dict[str, int] = {}
    covered = set()
    for i in range(C1.shape[0]):
        margin = W2[1, i] - W2[0, i]
        for j, clause in enumerate(clauses):
            positives = sum(1 for literal in clause if C1[i, literal] > 0)
            name = {4: "4P", 3: "3P1N", 2: "2P2N", 1: "1P3N", 0: "4N"}[positives]
            suffix = "positive" if margin > 0 else "negative"
            if name == "4P" and suffix == "positive":
                key = "4P-positive-any-bias"
                if b1[i] < 0:
                    counts["4P-positive"] = counts.get("4P-positive", 0) + 1
                    covered.add(j)
            else:
                key = f"{name}-{suffix}"
            counts[key] = counts.get(key, 0) + 1
    counts["clauses_covered"] = len(covered)
    return counts


def test_code_signs_hand_built():
    C1, _, _ = hand_built()
    expected = np.array([[4, 4], [3, 0], [4, 2], [1, 4], [4, 3]])
    np.testing.assert_array_equal(code_signs(C1, CLAUSES), expected)


def test_zero_weight_is_not_positive():
    C1 = np.array([[1.0, 1.0, 1.0, 0.0]])
    assert code_signs(C1, np.array([[0, 1, 2, 3]])).tolist() == [[3]]


def test_output_margin():
    _, W2, _ = hand_built()
    np.testing.assert_allclose(output_margin(W2), [2.0, -2.0, -0.4, 1.0, 0.0])
    with pytest.raises(ValueError, match="2 rows"):
        output_margin(np.zeros((3, 5)))


def test_four_p_positive_hand_built():
    C1, W2, b1 = hand_built()
    expected = np.array(
        [
            [True, True],  # all positive, margin 2, bias -0.5
            [False, False],  # margin negative and no 4P
            [False, False],  # 4P on clause 0 but margin -0.4
            [False, False],  # 4P on clause 1, margin 1, but bias exactly 0
            [False, False],  # 4P on clause 0 but margin exactly 0
        ]
    )
    result = four_p_positive(C1, W2, b1, CLAUSES)
    assert result.dtype == bool
    np.testing.assert_array_equal(result, expected)


def test_each_rule_alone_flips_four_p_positive():
    clauses = np.array([[0, 1, 2, 3]])
    C1 = np.array([[0.5, 0.5, 0.5, 0.5]])
    W2 = np.array([[0.0], [1.0]])
    b1 = np.array([-0.1])
    assert four_p_positive(C1, W2, b1, clauses).item()
    assert not four_p_positive(C1 * [[1, 1, 1, 0]], W2, b1, clauses).item()
    assert not four_p_positive(C1, np.array([[1.0], [1.0]]), b1, clauses).item()
    assert not four_p_positive(C1, W2, np.array([0.0]), clauses).item()
    assert not four_p_positive(C1, W2, np.array([0.1]), clauses).item()


def test_code_counts_hand_built():
    C1, W2, b1 = hand_built()
    counts = code_counts(C1, W2, b1, CLAUSES)
    assert counts == {
        "4P-positive": 2,
        "4P-positive-any-bias": 3,  # neuron 0 twice, neuron 3 on clause 1 (bias 0)
        "4P-negative": 2,  # neuron 2 (margin -0.4) and neuron 4 (margin 0) on clause 0
        "3P1N-positive": 0,
        "3P1N-negative": 2,  # neuron 1 clause 0, neuron 4 clause 1
        "2P2N-positive": 0,
        "2P2N-negative": 1,  # neuron 2 clause 1
        "1P3N-positive": 1,  # neuron 3 clause 0
        "1P3N-negative": 0,
        "4N-positive": 0,
        "4N-negative": 1,  # neuron 1 clause 1
        "clauses_covered": 2,
    }
    patterns = {key: value for key, value in counts.items() if key[0].isdigit()}
    assert sum(patterns.values()) - counts["4P-positive"] == C1.shape[0] * len(CLAUSES)


def test_clauses_covered_counts_clauses_not_neurons():
    clauses = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    C1 = np.zeros((3, 8))
    C1[:2, :4] = 1.0  # two neurons cover clause 0; nobody covers clause 1
    W2 = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    b1 = -np.ones(3)
    counts = code_counts(C1, W2, b1, clauses)
    assert counts["4P-positive"] == 2
    assert counts["clauses_covered"] == 1


@pytest.mark.parametrize("seed", range(5))
def test_code_counts_match_brute_force_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    literals, hidden = 16, 12
    clauses = rng.permutation(literals).reshape(-1, 4)
    # Rounded values so that zeros (and ties) occur.
    C1 = np.round(rng.normal(0.6, 1.0, size=(hidden, literals)), 0)
    W2 = np.round(rng.normal(size=(2, hidden)), 0)
    b1 = np.round(rng.normal(size=hidden), 0)
    expected = brute_force_counts(C1, W2, b1, clauses)
    counts = code_counts(C1, W2, b1, clauses)
    for key, value in counts.items():
        assert value == expected.get(key, 0), key
    assert set(expected) <= set(counts)
    signs = code_signs(C1, clauses)
    four_p = four_p_positive(C1, W2, b1, clauses)
    for i in range(hidden):
        for j, clause in enumerate(clauses):
            weights = C1[i, clause]
            assert signs[i, j] == (weights > 0).sum()
            assert four_p[i, j] == (
                all(w > 0 for w in weights) and W2[1, i] - W2[0, i] > 0 and b1[i] < 0
            )


def test_pattern_names():
    assert [pattern_name(p) for p in range(4, -1, -1)] == ["4P", "3P1N", "2P2N", "1P3N", "4N"]
    with pytest.raises(ValueError):
        pattern_name(5)


def test_code_persistence():
    before = np.array([[True, True, False], [False, True, False]])
    after = np.array([[True, False, True], [False, True, True]])
    assert code_persistence(before, after) == {
        "before": 3,
        "after": 4,
        "kept": 2,
        "lost": 1,
        "created": 2,
    }
    with pytest.raises(ValueError, match="shape"):
        code_persistence(before, after[:, :2])
    with pytest.raises(ValueError, match="boolean"):
        code_persistence(before.astype(int), after)


def test_shape_errors():
    C1, W2, b1 = hand_built()
    with pytest.raises(ValueError, match="b1"):
        code_counts(C1, W2, b1[:-1], CLAUSES)
    with pytest.raises(ValueError, match="W2"):
        four_p_positive(C1, W2[:, :-1], b1, CLAUSES)
    with pytest.raises(ValueError, match="outside"):
        code_signs(C1[:, :7], CLAUSES)
    with pytest.raises(ValueError, match="shape"):
        code_signs(C1, CLAUSES[:, :3])
