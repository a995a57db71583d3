from __future__ import annotations

import numpy as np
import pytest
import torch

from prunescope.align.hessian import hessian_sample, w1_hessian


def _tiny_net(d: int, classes: int, seed: int):
    rng = np.random.default_rng(seed)
    C0 = rng.normal(size=(d, d))
    W1 = rng.normal(size=(d, d))
    # Spread biases so some units are always off, some always on and some switch per sample.
    b1 = np.linspace(-4.0, 2.0, d)
    W2 = rng.normal(size=(classes, d))
    b2 = rng.normal(size=classes)
    x = rng.normal(size=(23, d))
    y = rng.integers(0, classes, size=23)
    return C0, W1, b1, W2, b2, x, y


def _autograd_hessian(C0, W1, b1, W2, b2, x, y) -> np.ndarray:
    C0, b1, W2, b2, x = (torch.as_tensor(a, dtype=torch.float64) for a in (C0, b1, W2, b2, x))
    labels = torch.as_tensor(y)

    def loss(w1: torch.Tensor) -> torch.Tensor:
        logits = torch.relu(x @ C0.T @ w1.T + b1) @ W2.T + b2
        return torch.nn.functional.cross_entropy(logits, labels)

    w1 = torch.as_tensor(W1, dtype=torch.float64)
    h, d = W1.shape
    return torch.autograd.functional.hessian(loss, w1).reshape(h * d, h * d).numpy()


@pytest.mark.parametrize(("d", "classes", "seed"), [(4, 2, 0), (5, 3, 1), (6, 3, 2), (6, 2, 3)])
def test_w1_hessian_equals_autograd(d, classes, seed):
    C0, W1, b1, W2, b2, x, y = _tiny_net(d, classes, seed)
    pre = x @ C0.T @ W1.T + b1
    assert (pre <= 0).any() and (pre > 0).any()  # the net really has switched-off ReLUs

    H = w1_hessian(C0, W1, b1, W2, b2, x)

    assert H.shape == (d * d, d * d) and H.dtype == np.float64
    np.testing.assert_allclose(H, _autograd_hessian(C0, W1, b1, W2, b2, x, y), atol=1e-8, rtol=0)


def test_w1_hessian_non_square_layer_and_dead_unit():
    rng = np.random.default_rng(7)
    d_in, h, classes = 4, 3, 3
    C0, W1 = rng.normal(size=(d_in, d_in)), rng.normal(size=(h, d_in))
    b1 = np.array([-100.0, 0.3, -0.2])  # unit 0 never fires, so its rows of H are zero
    W2, b2 = rng.normal(size=(classes, h)), rng.normal(size=classes)
    x = rng.normal(size=(9, d_in))
    y = rng.integers(0, classes, size=9)

    H = w1_hessian(C0, W1, b1, W2, b2, x)

    np.testing.assert_allclose(H, _autograd_hessian(C0, W1, b1, W2, b2, x, y), atol=1e-8, rtol=0)
    assert np.all(H[:d_in] == 0)


def test_w1_hessian_symmetric_and_chunk_independent():
    C0, W1, b1, W2, b2, x, _ = _tiny_net(5, 3, 4)

    whole = w1_hessian(C0, W1, b1, W2, b2, x)

    np.testing.assert_array_equal(whole, whole.T)
    assert np.linalg.eigvalsh(whole).min() > -1e-12  # a Gauss-Newton matrix is PSD
    for chunk in (1, 4, 7, 23):
        np.testing.assert_allclose(
            w1_hessian(C0, W1, b1, W2, b2, x, chunk=chunk), whole, atol=1e-13, rtol=0
        )


def test_w1_hessian_accepts_float32_and_tensors():
    C0, W1, b1, W2, b2, x, _ = _tiny_net(4, 2, 5)
    reference = w1_hessian(C0, W1, b1, W2, b2, x)
    as_tensors = [torch.as_tensor(a, dtype=torch.float32) for a in (C0, W1, b1, W2, b2, x)]

    H = w1_hessian(*as_tensors)

    np.testing.assert_allclose(H, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_w1_hessian_on_cuda_matches_cpu():
    C0, W1, b1, W2, b2, x, _ = _tiny_net(6, 3, 6)
    np.testing.assert_allclose(
        w1_hessian(C0, W1, b1, W2, b2, x, device="cuda"),
        w1_hessian(C0, W1, b1, W2, b2, x),
        atol=1e-12,
        rtol=0,
    )


def test_w1_hessian_rejects_bad_shapes_and_chunk():
    C0, W1, b1, W2, b2, x, _ = _tiny_net(4, 2, 0)
    with pytest.raises(ValueError, match="b1"):
        w1_hessian(C0, W1, b1[:3], W2, b2, x)
    with pytest.raises(ValueError, match="W2"):
        w1_hessian(C0, W1, b1, W2[:, :3], b2, x)
    with pytest.raises(ValueError, match="x has"):
        w1_hessian(C0, W1, b1, W2, b2, x[:, :3])
    with pytest.raises(ValueError, match="chunk"):
        w1_hessian(C0, W1, b1, W2, b2, x, chunk=0)


def test_hessian_sample():
    np.testing.assert_array_equal(hessian_sample(7, 1.0, seed=3), np.arange(7))
    subset = hessian_sample(100, 0.1, seed=3)
    assert subset.size == 10 and len(set(subset.tolist())) == 10
    assert np.all(np.diff(subset) > 0) and subset.min() >= 0 and subset.max() < 100
    np.testing.assert_array_equal(subset, hessian_sample(100, 0.1, seed=3))
    assert not np.array_equal(subset, hessian_sample(100, 0.1, seed=4))
    assert hessian_sample(5, 0.01, seed=0).size == 1
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            hessian_sample(10, bad, seed=0)
    with pytest.raises(ValueError, match="n=0"):
        hessian_sample(0, 0.5, seed=0)
