from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from prunescope.activations import FORMAT_VERSION
from prunescope.io import read_json
from prunescope.sae import (
    SAE_FILES,
    SAEConfig,
    TopKSAE,
    evaluate_sae,
    iter_shuffled_batches,
    load_sae,
    loss_and_gradients,
    lr_factor,
    project_out_parallel,
    resample_dead_features,
    row_top_k,
    train_sae,
)
from prunescope.sae.train import _check_finite

D_MODEL = 16


def sparse_activations(n_rows: int, seed: int, active: int = 2) -> np.ndarray:
    """Rows that are sums of ``active`` of 64 fixed unit directions in d=16 (positive weights),
    then shifted and scaled per dimension so the SAE's normalisation matters."""
    dictionary_rng = np.random.default_rng(1234)
    directions = dictionary_rng.normal(size=(64, D_MODEL))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    offset = dictionary_rng.normal(scale=5.0, size=D_MODEL)
    scale = dictionary_rng.uniform(0.5, 3.0, size=D_MODEL)
    rng = np.random.default_rng(seed)
    codes = np.zeros((n_rows, 64))
    for row in range(n_rows):
        chosen = rng.choice(64, size=active, replace=False)
        codes[row, chosen] = rng.uniform(0.5, 2.0, size=active)
    x = codes @ directions + rng.normal(scale=0.01, size=(n_rows, D_MODEL))
    return (x * scale + offset).astype(np.float32)


def write_cache(path, train: np.ndarray, eval_rows: np.ndarray, chunk: int = 256):
    with h5py.File(path, "w") as cache:
        cache.create_dataset("train", data=train, chunks=(min(chunk, len(train)), D_MODEL))
        cache.create_dataset("eval", data=eval_rows, chunks=(min(chunk, len(eval_rows)), D_MODEL))
        stats = train[:50_000].astype(np.float64)
        cache.attrs["mean"] = np.nan_to_num(stats).mean(0)
        cache.attrs["std"] = np.nan_to_num(stats).std(0)
        cache.attrs["format_version"] = FORMAT_VERSION
        cache.attrs["d_model"] = D_MODEL
        cache.attrs["model"] = "tiny-llama"
        cache.attrs["condition"] = "dense"
        cache.attrs["layer"] = 1
        cache.attrs["corpus"] = "synthetic"
    return path


FAST = dict(expansion=4, k=4, lr=2e-2, batch_size=256, warmup_steps=20, log_every=50)


# tiny tensors: thread start-up costs more than the maths on a busy 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sae")
    cache = write_cache(folder / "L1.h5", sparse_activations(4000, 0), sparse_activations(1000, 1))
    cfg = SAEConfig(**FAST, steps=400, resample_every=100, seed=0)
    metrics = train_sae(cache, cfg, torch.device("cpu"), folder / "out", {"seed_label": "s0"})
    return cache, folder / "out", metrics


def random_sae(d_sae: int = 64, k: int = 4, seed: int = 0) -> TopKSAE:
    return TopKSAE(D_MODEL, d_sae, k, generator=torch.Generator().manual_seed(seed))


def test_shapes_of_encode_decode_forward():
    x = torch.from_numpy(sparse_activations(10, 0))
    sae = TopKSAE(D_MODEL, 64, 4, x.double().mean(0), x.double().std(0), torch.Generator())
    values, indices = sae.encode(x)
    assert values.shape == indices.shape == (10, 4)
    assert sae.decode(values, indices).shape == (10, D_MODEL)
    out = sae(x.reshape(2, 5, D_MODEL))
    assert out.x_rec.shape == out.x_hat_rec.shape == out.x_hat.shape == (2, 5, D_MODEL)
    assert out.values.shape == (2, 5, 4)
    torch.testing.assert_close(out.x_rec, sae.denormalise(out.x_hat_rec))
    assert sae.mean.dtype == sae.std.dtype == torch.float64
    assert sae(x.bfloat16()).x_rec.dtype == torch.float32


def test_topk_keeps_the_k_largest_preactivations_after_relu():
    sae = random_sae()
    x_hat = torch.randn(32, D_MODEL)
    values, indices = sae.encode_normalised(x_hat)
    pre = x_hat @ sae.W_enc.detach().T + sae.b_enc.detach()
    expected = pre.sort(dim=-1, descending=True).values[:, :4].clamp_min(0)
    torch.testing.assert_close(values.detach().sort(dim=-1, descending=True).values, expected)
    torch.testing.assert_close(pre.gather(1, indices).clamp_min(0), values.detach())
    assert ((values > 0).sum(-1) <= 4).all()
    with torch.no_grad():
        sae.b_enc.fill_(100.0)
    assert ((sae.encode_normalised(x_hat)[0] > 0).sum(-1) == 4).all()


def test_sparse_decode_equals_dense_matmul_with_gradients():
    sae = random_sae()
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(1))
    values, indices = sae.encode_normalised(torch.randn(8, D_MODEL))
    values = values.detach().requires_grad_(True)
    upstream = torch.randn(8, D_MODEL)
    (sae.decode(values, indices) * upstream).sum().backward()
    sparse_out = sae.decode(values, indices).detach()
    sparse_grads = sae.W_dec.grad.clone(), values.grad.clone()

    sae.W_dec.grad, values.grad = None, None
    z = torch.zeros(8, 64).scatter(1, indices, values)
    dense_out = z @ sae.W_dec + sae.b_dec
    (dense_out * upstream).sum().backward()
    torch.testing.assert_close(sparse_out, dense_out.detach())
    torch.testing.assert_close(sparse_grads[0], sae.W_dec.grad)
    torch.testing.assert_close(sparse_grads[1], values.grad)


def test_hand_written_gradients_equal_autograd_of_the_dense_formulation():
    sae = random_sae(d_sae=64, k=6, seed=3)
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(2)).sub_(2.5)
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(4))
    x_hat = torch.randn(37, D_MODEL, generator=torch.Generator().manual_seed(5))
    out = loss_and_gradients(sae, x_hat)
    ours = {name: p.grad.clone() for name, p in sae.named_parameters()}
    assert all(not p.requires_grad or p.grad is not None for p in sae.parameters())

    sae.zero_grad(set_to_none=True)
    pre = x_hat @ sae.W_enc.T + sae.b_enc
    kept = pre.topk(6, dim=-1)
    z = torch.zeros_like(pre).scatter(1, kept.indices, kept.values.relu())
    reference_loss = (z @ sae.W_dec + sae.b_dec - x_hat).pow(2).sum(-1).mean()
    reference_loss.backward()
    assert (kept.values <= 0).any(), "the ReLU on kept latents must be exercised"
    torch.testing.assert_close(out.loss, reference_loss.detach())
    for name, param in sae.named_parameters():
        torch.testing.assert_close(ours[name], param.grad, msg=name)


@pytest.mark.parametrize("n, k", [(64, 4), (64, 8), (96, 5), (100, 3), (16, 16)])
def test_row_top_k_finds_the_k_largest_of_each_row_even_with_ties(n, k):
    generator = torch.Generator().manual_seed(n + k)
    for scores in (
        torch.randn(50, n, generator=generator),
        torch.randint(-3, 4, (50, n), generator=generator).float(),  # many ties
    ):
        values, indices = row_top_k(scores, k)
        expected = scores.topk(k, dim=-1).values
        torch.testing.assert_close(values.sort(-1).values, expected.sort(-1).values)
        torch.testing.assert_close(scores.gather(1, indices), values)
        assert (indices.sort(-1).values.diff(dim=-1) > 0).all(), "an index is repeated"


def test_first_non_finite_loss_is_reported_with_its_step():
    cfg = SAEConfig(**{**FAST, "log_every": 10}, steps=40)
    recent = torch.ones(10)
    _check_finite(recent, 20, cfg, "L1.h5")
    recent[[4, 7]] = torch.tensor([float("inf"), float("nan")])
    with pytest.raises(FloatingPointError, match=r"SAE loss is Inf at step 25 of 40.*L1\.h5"):
        _check_finite(recent, 30, cfg, "L1.h5")
    _check_finite(recent, 24, cfg, "L1.h5")  # steps 21..24 are finite


def test_project_out_parallel_matches_row_by_row_projection():
    rows = torch.randn(5, 7, dtype=torch.float64)
    rows /= rows.norm(dim=-1, keepdim=True)
    grad = torch.randn(5, 7, dtype=torch.float64)
    projected = project_out_parallel(grad, rows)
    for g, r, p in zip(grad, rows, projected, strict=True):
        torch.testing.assert_close(p, g - torch.dot(g, r) * r)
    torch.testing.assert_close((projected * rows).sum(-1), torch.zeros(5, dtype=torch.float64))


def test_lr_factor_warms_up_linearly_then_anneals_to_zero():
    assert [lr_factor(s, 4, 100) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 100) == 1.0
    assert lr_factor(52, 4, 100) == pytest.approx(0.5)
    assert lr_factor(100, 4, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 0, 10) == 1.0


def test_shuffled_batches_cover_each_row_once_per_epoch_and_are_seeded():
    rows = np.repeat(np.arange(3000, dtype=np.float32)[:, None], 2, axis=1)

    def take(seed, n):
        batches = iter_shuffled_batches(
            rows, 100, 2200, torch.Generator().manual_seed(seed), torch.device("cpu")
        )
        return [next(batches) for _ in range(n)]

    first_epoch = torch.cat(take(0, 30))[:, 0]
    assert sorted(first_epoch.long().tolist()) == list(range(3000))
    assert not torch.equal(first_epoch, torch.arange(3000.0))
    two_epochs = take(0, 60)
    assert all(torch.equal(a, b) for a, b in zip(take(0, 60), two_epochs, strict=True))
    assert sorted(torch.cat(two_epochs[30:])[:, 0].long().tolist()) == list(range(3000))
    assert not torch.equal(torch.cat(take(1, 30)), torch.cat(two_epochs[:30]))


def test_shuffled_batches_are_full_when_a_buffer_is_smaller_than_a_batch(tmp_path):
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        f.create_dataset("train", data=np.ones((2100, 2), np.float32), chunks=(1024, 2))
        batches = iter_shuffled_batches(
            f["train"], 1000, 1024, torch.Generator().manual_seed(0), torch.device("cpu")
        )
        assert [len(next(batches)) for _ in range(12)] == [1000] * 12


def test_resampling_revives_dead_features_and_resets_their_adam_state():
    sae = random_sae(seed=3)
    x = torch.from_numpy(sparse_activations(2000, 2))
    with torch.no_grad():
        sae.mean.copy_(x.double().mean(0))
        sae.std.copy_(x.double().std(0))
    x_hat = sae.normalise(x)
    dead_ids = torch.arange(0, 64, 4)
    with torch.no_grad():
        sae.b_enc[dead_ids] = -1e4
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    values, indices = sae.encode_normalised(x_hat[:256])
    (sae.decode(values, indices) - x_hat[:256]).pow(2).sum(-1).mean().backward()
    optimizer.step()
    sae.normalise_decoder()
    for param in (sae.W_enc, sae.b_enc, sae.W_dec):
        optimizer.state[param]["exp_avg"].fill_(1.0)
        optimizer.state[param]["exp_avg_sq"].fill_(1.0)
    assert not torch.isin(dead_ids, indices[values > 0]).any()

    dead = torch.zeros(64, dtype=torch.bool)
    dead[dead_ids] = True
    alive_before = sae.W_enc.detach()[~dead].clone()
    count = resample_dead_features(sae, optimizer, dead, x_hat, torch.Generator().manual_seed(0))

    assert count == len(dead_ids)
    values, indices = sae.encode_normalised(x_hat)
    assert torch.isin(dead_ids, indices[values > 0]).all()
    assert (sae.b_enc.detach()[dead_ids] == 0).all()
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=-1), torch.ones(64))
    assert torch.equal(sae.W_enc.detach()[~dead], alive_before)
    for param in (sae.W_enc, sae.b_enc, sae.W_dec):
        for moment in ("exp_avg", "exp_avg_sq"):
            state = optimizer.state[param][moment]
            assert (state[dead_ids] == 0).all() and (state[~dead] == 1).all()


def test_training_reaches_low_fvu_and_writes_the_three_files(trained):
    cache, out, metrics = trained
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "metrics.json", "sae.safetensors"]
    assert metrics["fvu"] < 0.2
    assert metrics == read_json(out / "metrics.json")
    assert metrics["n_eval_tokens"] == 1000 and metrics["d_sae"] == 64
    assert metrics["alive"] + metrics["dead"] == 64 and len(metrics["firing_rate"]) == 64
    assert 0 < metrics["l0"] <= 4
    assert [s for s, _ in metrics["resampled"]] == [100, 200, 300]
    curve = metrics["loss_curve"]
    assert [s for s, *_ in curve] == list(range(50, 401, 50))
    assert curve[-1][1] < curve[0][1]
    cfg = read_json(out / "cfg.json")
    assert cfg["d_model"] == D_MODEL and cfg["d_sae"] == 64 and cfg["k"] == 4
    assert cfg["dead_window"] == 100 and "normalisation" in cfg
    assert cfg["provenance"]["condition"] == "dense" and cfg["provenance"]["layer"] == 1
    assert cfg["provenance"]["seed_label"] == "s0"


def test_trained_decoder_rows_are_unit_norm_and_stats_float64(trained):
    sae = load_sae(trained[1])
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=-1), torch.ones(64))
    assert sae.mean.dtype == torch.float64
    with h5py.File(trained[0]) as cache:
        np.testing.assert_array_equal(sae.std.numpy(), cache.attrs["std"])


def test_reported_fvu_l0_and_firing_rate_match_numpy(trained):
    cache, out, metrics = trained
    sae = load_sae(out)
    weights = {name: t.detach().double().numpy() for name, t in sae.state_dict().items()}
    with h5py.File(cache) as f:
        x = f["eval"][:].astype(np.float64)
    x_hat = (x - weights["mean"]) / weights["std"]
    pre = x_hat @ weights["W_enc"].T + weights["b_enc"]
    top = np.argpartition(-pre, 4, axis=1)[:, :4]
    z = np.zeros_like(pre)
    np.put_along_axis(z, top, np.maximum(np.take_along_axis(pre, top, axis=1), 0), axis=1)
    x_rec = (z @ weights["W_dec"] + weights["b_dec"]) * weights["std"] + weights["mean"]
    fvu = ((x - x_rec) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert metrics["fvu"] == pytest.approx(fvu, rel=1e-4)
    x_hat_rec = z @ weights["W_dec"] + weights["b_dec"]
    fvu_norm = ((x_hat - x_hat_rec) ** 2).sum() / ((x_hat - x_hat.mean(0)) ** 2).sum()
    assert metrics["fvu_normalised"] == pytest.approx(fvu_norm, rel=1e-4)
    assert metrics["l0"] == pytest.approx((z > 0).sum(1).mean())
    np.testing.assert_allclose(metrics["firing_rate"], (z > 0).mean(0))
    assert metrics["alive"] == int(((z > 0).sum(0) > 0).sum())


def test_evaluate_sae_gives_zero_fvu_for_a_perfect_dictionary():
    basis = torch.eye(D_MODEL)
    sae = TopKSAE(D_MODEL, D_MODEL, D_MODEL)
    with torch.no_grad():
        sae.W_enc.copy_(basis)
        sae.W_dec.copy_(basis)
        sae.b_enc.fill_(1e3)
        sae.b_dec.fill_(-1e3)
    metrics = evaluate_sae(sae, np.random.default_rng(0).normal(size=(50, D_MODEL)), 16)
    assert metrics["fvu"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["l0"] == D_MODEL and metrics["alive"] == D_MODEL


def test_same_seed_gives_identical_weights(tmp_path):
    cache = write_cache(tmp_path / "c.h5", sparse_activations(1000, 0), sparse_activations(200, 1))
    cfg = SAEConfig(**FAST, steps=40, resample_every=20)
    for name in ("a", "b"):
        train_sae(cache, cfg, "cpu", tmp_path / name)
    a, b = ((tmp_path / n / "sae.safetensors").read_bytes() for n in ("a", "b"))
    assert a == b
    train_sae(cache, SAEConfig(**FAST, steps=40, resample_every=20, seed=1), "cpu", tmp_path / "c")
    assert (tmp_path / "c" / "sae.safetensors").read_bytes() != a


def test_nan_in_the_cache_raises_with_the_layer_file_and_step(tmp_path):
    train = sparse_activations(1000, 0)
    train[::7, 3] = np.nan  # in every batch, so the loss is NaN from the first step
    cache = write_cache(tmp_path / "L5_bad.h5", train, sparse_activations(200, 1))
    message = r"SAE loss is NaN at step 1 of 40 while training on layer 1 activations in .*L5_bad"
    with pytest.raises(FloatingPointError, match=message):
        train_sae(cache, SAEConfig(**FAST, steps=40), "cpu", tmp_path / "out")
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_inf_in_the_eval_split_is_named_with_its_row(tmp_path):
    eval_rows = sparse_activations(200, 1)
    eval_rows[117, 5] = -np.inf
    eval_rows[150, 2] = np.nan
    cache = write_cache(tmp_path / "L1.h5", sparse_activations(1000, 0), eval_rows)
    cfg = SAEConfig(**FAST, steps=40, eval_batch_size=64)
    message = r"the eval split of layer 1 activations in .*L1\.h5 has Inf in row 117$"
    with pytest.raises(FloatingPointError, match=message):
        train_sae(cache, cfg, "cpu", tmp_path / "out")


def test_bad_cache_and_config_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        train_sae(tmp_path / "missing.h5", SAEConfig(**FAST, steps=40), "cpu", tmp_path / "o")
    with h5py.File(tmp_path / "no_eval.h5", "w") as f:
        f.create_dataset("train", data=np.zeros((300, D_MODEL), np.float32))
    with pytest.raises(ValueError, match="no_eval.h5.*'eval'"):
        train_sae(tmp_path / "no_eval.h5", SAEConfig(**FAST, steps=40), "cpu", tmp_path / "o")
    with pytest.raises(ValueError, match="k=0"):
        SAEConfig(k=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        SAEConfig(steps=10, warmup_steps=10)
    assert SAEConfig(resample_every=300).dead_window == 300


def test_load_sae_names_the_missing_or_corrupt_file(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text((trained[1] / "cfg.json").read_text())
    (tmp_path / "sae.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="sae.safetensors"):
        load_sae(tmp_path)


def test_training_replaces_the_folder_whole_and_refuses_a_shared_one(tmp_path):
    cache = write_cache(tmp_path / "L1.h5", sparse_activations(600, 0), sparse_activations(100, 1))
    out = tmp_path / "sae"
    out.mkdir()
    (out / "metrics.json").write_text("{stale")
    train_sae(cache, SAEConfig(**FAST, steps=40), "cpu", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(SAE_FILES)
    assert not (tmp_path / "sae.partial").exists()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"also holds \['notes.txt'\]"):
        train_sae(cache, SAEConfig(**FAST, steps=40), "cpu", out)
    assert (out / "notes.txt").exists()
