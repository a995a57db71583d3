from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from prunescope.align.net import (
    PARAMETER_NAMES,
    AlignNets,
    _loss_and_gradients,
    evaluate_nets,
    load_nets,
    load_nets_metadata,
    save_nets,
    train_nets,
)

D_IN, CLASSES = 8, 2


def reference_model(single: dict[str, np.ndarray]) -> torch.nn.Sequential:
    """The unstacked network as plain torch layers: Linear(C0) -> Linear(W1, b1) -> ReLU -> ..."""
    d, d_in = single["C0"].shape
    h = single["W1"].shape[0]
    classes = single["W2"].shape[0]
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, d, bias=False),
        torch.nn.Linear(d, h),
        torch.nn.ReLU(),
        torch.nn.Linear(h, classes),
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.as_tensor(single["C0"]))
        model[1].weight.copy_(torch.as_tensor(single["W1"]))
        model[1].bias.copy_(torch.as_tensor(single["b1"]))
        model[3].weight.copy_(torch.as_tensor(single["W2"]))
        model[3].bias.copy_(torch.as_tensor(single["b2"]))
    return model


def reference_arrays(model: torch.nn.Sequential) -> dict[str, np.ndarray]:
    tensors = {
        "C0": model[0].weight,
        "W1": model[1].weight,
        "b1": model[1].bias,
        "W2": model[3].weight,
        "b2": model[3].bias,
    }
    return {name: tensor.detach().numpy().astype(np.float64) for name, tensor in tensors.items()}


def train_reference(model, x, y, *, epochs, lr, batch_size, seed, mask=None):
    """Plain autograd + torch.optim.Adam loop over the batches train_nets promises to use."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    keep = None if mask is None else torch.as_tensor(mask).float()
    if keep is not None:
        with torch.no_grad():
            model[1].weight.mul_(keep)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            optimiser.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            if keep is not None:
                model[1].weight.grad.mul_(keep)
            optimiser.step()
            if keep is not None:
                with torch.no_grad():
                    model[1].weight.mul_(keep)
    return model


def toy_problem(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D_IN)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def test_initialise_shapes_bounds_and_seed():
    nets = AlignNets.initialise(3, D_IN, CLASSES, seed=5)
    expected = {
        "C0": (3, D_IN, D_IN),
        "W1": (3, D_IN, D_IN),
        "b1": (3, D_IN),
        "W2": (3, CLASSES, D_IN),
        "b2": (3, CLASSES),
    }
    for name, shape in expected.items():
        tensor = getattr(nets, name)
        assert tuple(tensor.shape) == shape and tensor.dtype == torch.float32
        assert tensor.abs().max() <= 1 / math.sqrt(D_IN)
        assert tensor.abs().max() > 0.5 / math.sqrt(D_IN)
    assert not torch.equal(nets.W1[0], nets.W1[1])
    again = AlignNets.initialise(3, D_IN, CLASSES, seed=5)
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(again, name), getattr(nets, name))
    first = AlignNets.initialise(1, D_IN, CLASSES, seed=5)
    assert torch.equal(first.W1[0], nets.W1[0])
    assert not torch.equal(AlignNets.initialise(1, D_IN, CLASSES, seed=6).W1, first.W1)


def test_initialise_matches_linear_default_spread():
    # Linear's default weights are uniform on +-1/sqrt(fan_in): variance 1/(3 fan_in).
    nets = AlignNets.initialise(1, 64, 2, seed=0)
    assert nets.W1.var().item() == pytest.approx(1 / (3 * 64), rel=0.05)
    assert nets.C0.var().item() == pytest.approx(1 / (3 * 64), rel=0.05)


def test_forward_matches_unstacked_reference():
    nets = AlignNets.initialise(3, D_IN, CLASSES, seed=1)
    with torch.no_grad():
        nets.b1.normal_()  # Make some hidden units inactive so ReLU matters.
    x, _ = toy_problem(50)
    logits = nets(torch.as_tensor(x))
    assert logits.shape == (3, 50, CLASSES)
    for v in range(3):
        expected = reference_model(nets.variant(v))(torch.as_tensor(x))
        torch.testing.assert_close(logits[v], expected, atol=1e-5, rtol=1e-5)
        single = nets.variant(v)
        by_hand = (
            single["W2"]
            @ np.maximum(single["W1"] @ (single["C0"] @ x.T) + single["b1"][:, None], 0)
            + single["b2"][:, None]
        )
        np.testing.assert_allclose(logits[v].detach().numpy(), by_hand.T, atol=1e-5)


def test_feature_weights_equal_w1_times_c0():
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=2)
    C1 = nets.feature_weights().detach().numpy()
    for v in range(2):
        single = nets.variant(v)
        np.testing.assert_allclose(C1[v], single["W1"] @ single["C0"], atol=1e-6)


def test_hand_gradients_equal_autograd():
    nets = AlignNets.initialise(3, D_IN, CLASSES, seed=3)
    with torch.no_grad():
        nets.b1.normal_()
    x, y = toy_problem(40)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    loss, gradients = _loss_and_gradients(nets, x, y)
    logits = nets(x)
    autograd_loss = sum(F.cross_entropy(logits[v], y) for v in range(3))
    autograd_loss.backward()
    for v in range(3):
        torch.testing.assert_close(loss[v], F.cross_entropy(logits[v], y).detach())
    for name in PARAMETER_NAMES:
        torch.testing.assert_close(gradients[name], getattr(nets, name).grad, atol=1e-6, rtol=1e-5)


def test_training_matches_autograd_adam_reference():
    x, y = toy_problem(150)
    nets = AlignNets.initialise(1, D_IN, CLASSES, seed=4)
    reference = reference_model(nets.variant(0))
    train_nets(nets, x, y, epochs=3, lr=1e-2, batch_size=32, seed=9, progress=False)
    train_reference(reference, x, y, epochs=3, lr=1e-2, batch_size=32, seed=9)
    for name, array in reference_arrays(reference).items():
        np.testing.assert_allclose(nets.variant(0)[name], array, atol=1e-5, err_msg=name)


def test_stacked_training_equals_training_each_variant_alone():
    x, y = toy_problem(150)
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=6)
    alone = [AlignNets.from_arrays(nets.variant(v)) for v in range(2)]
    records = train_nets(nets, x, y, epochs=3, lr=1e-2, batch_size=32, seed=1, progress=False)
    for v, net in enumerate(alone):
        solo_records = train_nets(
            net, x, y, epochs=3, lr=1e-2, batch_size=32, seed=1, progress=False
        )
        for name in PARAMETER_NAMES:
            np.testing.assert_allclose(nets.variant(v)[name], net.variant(0)[name], atol=1e-5)
        for stacked_record, solo_record in zip(records, solo_records, strict=True):
            assert stacked_record["train_loss"][v] == pytest.approx(solo_record["train_loss"][0])


def test_masked_entries_stay_exactly_zero_and_match_reference():
    x, y = toy_problem(150)
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=7)
    masks = np.random.default_rng(0).random((2, D_IN, D_IN)) < 0.4
    reference = reference_model(nets.variant(1))
    seen_epochs = []

    def check(epoch, current):
        seen_epochs.append(epoch)
        assert (current.W1.detach().numpy()[~masks] == 0).all()

    train_nets(
        nets,
        x,
        y,
        epochs=3,
        lr=1e-2,
        batch_size=32,
        seed=2,
        masks=masks,
        callback=check,
        progress=False,
    )
    assert seen_epochs == [0, 1, 2, 3]
    W1 = nets.W1.detach().numpy()
    assert (W1[~masks] == 0).all() and (W1[masks] != 0).all()
    train_reference(reference, x, y, epochs=3, lr=1e-2, batch_size=32, seed=2, mask=masks[1])
    np.testing.assert_allclose(W1[1], reference_arrays(reference)["W1"], atol=1e-5)


@pytest.mark.parametrize(
    ("masks", "message"),
    [(np.ones((1, D_IN, D_IN), bool), "shape"), (np.ones((2, D_IN, D_IN)), "boolean")],
)
def test_mask_must_match_w1(masks, message):
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=0)
    x, y = toy_problem(20)
    schedule = {"epochs": 1, "lr": 1e-3, "batch_size": 8, "seed": 0}
    with pytest.raises(ValueError, match=message):
        train_nets(nets, x, y, **schedule, masks=masks, progress=False)


def test_training_lowers_loss_on_separable_problem():
    x, y = toy_problem(400)
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=8)
    loss_before, _ = evaluate_nets(nets, x, y)
    records = train_nets(nets, x, y, epochs=20, lr=1e-2, batch_size=64, seed=0, progress=False)
    loss_after, accuracy = evaluate_nets(nets, x, y)
    assert len(records) == 20 and [r["epoch"] for r in records] == list(range(1, 21))
    assert (loss_after < 0.5 * loss_before).all()
    assert (accuracy > 0.95).all()
    assert records[-1]["train_loss"][0] < records[0]["train_loss"][0]


def test_training_is_deterministic_and_seed_dependent():
    x, y = toy_problem(150)
    runs = []
    for seed in (3, 3, 4):
        nets = AlignNets.initialise(1, D_IN, CLASSES, seed=0)
        train_nets(nets, x, y, epochs=2, lr=1e-2, batch_size=32, seed=seed, progress=False)
        runs.append(nets.to_arrays())
    for name in PARAMETER_NAMES:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])
    assert not np.array_equal(runs[0]["W1"], runs[2]["W1"])


def test_evaluate_matches_reference():
    x, y = toy_problem(300)
    nets = AlignNets.initialise(3, D_IN, CLASSES, seed=9)
    loss, accuracy = evaluate_nets(nets, x, y, batch_size=64)
    assert loss.shape == accuracy.shape == (3,)
    assert loss.dtype == accuracy.dtype == np.float64
    for v in range(3):
        logits = reference_model(nets.variant(v))(torch.as_tensor(x)).detach()
        expected_loss = F.cross_entropy(logits, torch.as_tensor(y)).item()
        expected_accuracy = (logits.argmax(1).numpy() == y).mean()
        assert loss[v] == pytest.approx(expected_loss, rel=1e-5)
        assert accuracy[v] == pytest.approx(expected_accuracy)


def test_array_round_trips_and_helpers():
    nets = AlignNets.initialise(3, D_IN, CLASSES, seed=10)
    arrays = nets.to_arrays()
    assert all(array.dtype == np.float64 for array in arrays.values())
    rebuilt = AlignNets.from_arrays(arrays)
    restacked = AlignNets.stack([nets.variant(v) for v in range(3)])
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(rebuilt, name), getattr(nets, name))
        assert torch.equal(getattr(restacked, name), getattr(nets, name))
    single = AlignNets.from_arrays(nets.variant(2))
    assert single.variants == 1
    copies = single.repeat(4)
    assert copies.variants == 4
    for v in range(4):
        for name in PARAMETER_NAMES:
            np.testing.assert_array_equal(copies.variant(v)[name], nets.variant(2)[name])
    with pytest.raises(ValueError, match="single net"):
        nets.repeat(2)
    with pytest.raises(ValueError, match="lack"):
        AlignNets.from_arrays({"W1": arrays["W1"]})
    bad = dict(arrays, W2=arrays["W2"][:, :, :-1])
    with pytest.raises(ValueError, match="disagree"):
        AlignNets.from_arrays(bad)


def test_save_load_round_trip(tmp_path):
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=11)
    x, y = toy_problem(50)
    train_nets(nets, x, y, epochs=1, lr=1e-2, batch_size=16, seed=0, progress=False)
    path = tmp_path / "nets" / "dense.safetensors"
    save_nets(path, nets, {"dataset": "dnf16", "seed": "11"})
    loaded = load_nets(path)
    for name in PARAMETER_NAMES:
        assert torch.equal(getattr(loaded, name), getattr(nets, name))
    assert load_nets_metadata(path) == {"dataset": "dnf16", "seed": "11"}
    save_nets(tmp_path / "plain.safetensors", nets)
    assert load_nets_metadata(tmp_path / "plain.safetensors") == {}


def test_callback_can_save_during_training(tmp_path):
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=12)
    x, y = toy_problem(50)

    def save(epoch, current):
        save_nets(tmp_path / f"epoch{epoch}.safetensors", current)

    train_nets(nets, x, y, epochs=2, lr=1e-2, batch_size=16, seed=0, callback=save, progress=False)
    final = load_nets(tmp_path / "epoch2.safetensors")
    assert torch.equal(final.W1, nets.W1)
    assert not torch.equal(load_nets(tmp_path / "epoch0.safetensors").W1, nets.W1)
