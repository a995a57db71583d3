"""RQ3 transfer: reconstruction metrics of any SAE on any rows, checked against a brute-force
numpy computation on tiny inputs for every layout ``prunescope.pretrained`` reads (and
against ``sae.evaluate_sae`` for prunescope's own SAE); ``encode_and_reconstruct`` of
every layout; Table 2 built from per-condition records."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pandas as pd
import pytest
import torch
from test_pretrained import (
    D_MODEL,
    D_SAE,
    activations,
    dictionary,
    gemma_scope,
    gemma_scope_2,
    np_decode,
    np_jumprelu,
    np_pre,
    prunescope,
    saelens,
    saelens_cfg,
    sparsify,
    sparsify_cfg,
)

from prunescope.pretrained import DictionarySAE, load_pretrained_sae
from prunescope.sae import evaluate_sae, load_sae
from prunescope.transfer import TABLE2_COLUMNS, reconstruction_metrics, transfer_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = 37  # prime: no batch size below it divides it
BATCH_SIZES = [1, 4, 5, 16, 36, 37, 100]
SOURCE = "the eval split of layer 3 activations in cache.h5"


def with_dead_latents(weights: dict, dead=range(5)) -> dict:
    """Latents ``dead`` never fire for a JumpReLU SAE (a huge threshold) and rarely for the
    others (a very negative bias), so that ``alive`` is below d_sae."""
    weights = {name: value.copy() for name, value in weights.items()}
    weights["threshold"][list(dead)] = 1e6
    weights["b_enc"][list(dead)] = -1e6
    return weights


LAYOUTS = {
    "gemma_scope": lambda f: gemma_scope(f, with_dead_latents(dictionary(seed=21))),
    "gemma_scope_2": lambda f: gemma_scope_2(f, with_dead_latents(dictionary(seed=22))),
    "saelens_standard": lambda f: saelens(
        f, saelens_cfg("standard"), with_dead_latents(dictionary(seed=23))
    ),
    "saelens_topk": lambda f: saelens(f, saelens_cfg("topk"), dictionary(seed=24)),
    "saelens_jumprelu": lambda f: saelens(
        f, saelens_cfg("jumprelu"), with_dead_latents(dictionary(seed=25))
    ),
    "saelens_constant_norm_rescale": lambda f: saelens(
        f, saelens_cfg("standard", normalize_activations="constant_norm_rescale")
    ),
    "saelens_layer_norm": lambda f: saelens(
        f, saelens_cfg("standard", normalize_activations="layer_norm")
    ),
    "sparsify": lambda f: sparsify(f, weights=dictionary(seed=26)),
    "sparsify_groupmax": lambda f: sparsify(f, sparsify_cfg(activation="groupmax")),
    "prunescope": prunescope,
}


def rows_with_offset(offset: float = 0.0, rows: int = ROWS, seed: int = 5) -> np.ndarray:
    """float32 rows: per-dimension scales and centres, plus ``offset`` on every entry."""
    x = activations(seed=seed, rows=rows).astype(np.float64)
    x = x * np.linspace(0.5, 3.0, D_MODEL) + np.linspace(-2.0, 2.0, D_MODEL)
    return (x + offset).astype(np.float32)


def brute_force(z: np.ndarray, x_rec: np.ndarray, rows: np.ndarray) -> dict:
    """The metrics by their definitions, in float64, all rows at once (two-pass variance)."""
    x = rows.astype(np.float64)
    x_rec = x_rec.astype(np.float64)
    on = z != 0
    return {
        "fvu": ((x - x_rec) ** 2).sum() / ((x - x.mean(axis=0)) ** 2).sum(),
        "l0": on.sum(axis=1).mean(),
        "alive": int(on.any(axis=0).sum()),
        "d_sae": z.shape[1],
        "n_eval_tokens": len(rows),
    }


def by_hand(sae, rows: np.ndarray) -> dict:
    """The reference from the SAE's own encode and reconstruct over all rows at once."""
    x = torch.from_numpy(rows)
    return brute_force(sae.encode(x).numpy(), sae.reconstruct(x).numpy(), rows)


def assert_metrics(actual: dict, expected: dict, rtol: float) -> None:
    assert set(actual) == {"fvu", "l0", "alive", "d_sae", "n_eval_tokens"}
    assert actual["fvu"] == pytest.approx(expected["fvu"], rel=rtol)
    assert actual["l0"] == pytest.approx(expected["l0"], rel=1e-12)
    for name in ("alive", "d_sae", "n_eval_tokens"):
        assert actual[name] == expected[name], name
        assert isinstance(actual[name], int), name
    assert isinstance(actual["fvu"], float) and isinstance(actual["l0"], float)


# ----------------------------------------------------------------- reconstruction_metrics


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_metrics_match_brute_force_for_every_layout_and_batch_size(tmp_path, layout, offset):
    sae = load_pretrained_sae(LAYOUTS[layout](tmp_path / "sae"))
    rows = rows_with_offset(offset)
    expected = by_hand(sae, rows)
    if layout in ("gemma_scope", "gemma_scope_2", "saelens_jumprelu", "saelens_standard"):
        assert expected["alive"] <= D_SAE - 5, "the case needs dead latents"
    assert 0 < expected["l0"] < D_SAE
    results = [reconstruction_metrics(sae, rows, b, SOURCE) for b in BATCH_SIZES]
    for result in results:
        assert_metrics(result, expected, rtol=1e-5)
    # and the batch size changes nothing beyond round-off
    for result in results[1:]:
        assert result["fvu"] == pytest.approx(results[0]["fvu"], rel=1e-6)
        assert (result["l0"], result["alive"]) == (results[0]["l0"], results[0]["alive"])


def test_gemma_scope_metrics_match_a_numpy_forward_pass(tmp_path):
    """The whole computation from the weights alone, no SAE method involved."""
    weights = with_dead_latents(dictionary(seed=31))
    sae = load_pretrained_sae(gemma_scope(tmp_path / "gs", weights))
    rows = rows_with_offset()
    z = np_jumprelu(np_pre(rows, weights, False), weights["threshold"])
    expected = brute_force(z, np_decode(z, weights), rows)
    assert 0 < expected["alive"] < D_SAE
    for batch_size in (1, 6, ROWS):
        assert_metrics(reconstruction_metrics(sae, rows, batch_size), expected, rtol=1e-5)


class OffByOne:
    """A stand-in SAE whose reconstruction is the input minus 1 everywhere (exact in float32
    at these magnitudes) and whose latents are the entries above a per-column level: the
    error sum is exactly rows x d_model, so only the variance can go wrong."""

    d_sae = D_MODEL

    def __init__(self, levels: torch.Tensor):
        self.levels = levels
        self.calls = 0

    def encode_and_reconstruct(self, x: torch.Tensor):
        self.calls += 1
        return torch.where(x > self.levels, x, 0.0), x - 1.0


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_a_large_constant_offset_does_not_cancel_the_variance(offset):
    rows = rows_with_offset(offset)
    x = rows.astype(np.float64)
    variance = ((x - x.mean(axis=0)) ** 2).sum()
    levels = torch.from_numpy(np.median(rows, axis=0))
    for batch_size in BATCH_SIZES:
        stand_in = OffByOne(levels)
        result = reconstruction_metrics(stand_in, rows, batch_size)
        assert stand_in.calls == math.ceil(ROWS / batch_size)
        assert result["fvu"] == pytest.approx(ROWS * D_MODEL / variance, rel=1e-9), batch_size
        expected = brute_force((rows > levels.numpy()) * rows, rows - 1.0, rows)
        assert_metrics(result, expected, rtol=1e-9)
    # the naive float64 sum of squares at this offset is visibly off: the check has teeth
    naive = (x**2).sum() - (x.sum(axis=0) ** 2 / ROWS).sum()
    if offset >= 1e6:
        assert abs(naive / variance - 1) > 1e-9


def test_latents_are_counted_per_row_and_alive_over_all_rows():
    """Hand-written latents: 2, 0, 3 non-zero per row; latents 0, 2, 3, 5 ever fire, 3 and 5
    only in the last row (the partial batch of size 2)."""
    z = torch.tensor(
        [
            [1.0, 0.0, 2.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.5, 0.0, 0.0, -1.5, 0.0, 7.0],
        ]
    )
    rows = np.arange(12, dtype=np.float32).reshape(3, 4) ** 2

    class Fixed:
        d_sae = 6

        def encode_and_reconstruct(self, x):
            first = int(np.flatnonzero((rows == x[0].numpy()).all(axis=1))[0])
            return z[first : first + len(x)], x * 0.5

    for batch_size in (1, 2, 3):
        result = reconstruction_metrics(Fixed(), rows, batch_size)
        assert (result["l0"], result["alive"], result["d_sae"]) == (5 / 3, 4, 6)
        x = rows.astype(np.float64)
        assert result["fvu"] == pytest.approx(
            ((0.5 * x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(), rel=1e-12
        )


def test_prunescope_sae_matches_evaluate_sae(tmp_path):
    folder = prunescope(tmp_path / "sae")
    pretrained, own = load_pretrained_sae(folder), load_sae(folder)
    for offset in (0.0, 1e4):
        rows = rows_with_offset(offset, rows=53)
        for batch_size in (1, 7, 53, 64):
            ours = reconstruction_metrics(pretrained, rows, batch_size)
            reference = evaluate_sae(own, rows, batch_size)
            assert ours["fvu"] == pytest.approx(reference["fvu"], rel=1e-5)
            assert ours["l0"] == pytest.approx(reference["l0"], rel=1e-12)
            assert ours["alive"] == reference["alive"]
            assert (ours["d_sae"], ours["n_eval_tokens"]) == (D_SAE, 53)


@pytest.mark.parametrize(
    ("position", "value", "named"),
    [
        ((6, 3), np.nan, "NaN in row 6"),
        ((0, 0), np.inf, "Inf in row 0"),
        ((36, 7), -np.inf, "Inf in row 36"),
    ],
)
def test_a_non_finite_row_is_refused_naming_the_source_and_row(tmp_path, position, value, named):
    sae = load_pretrained_sae(gemma_scope(tmp_path / "gs"))
    rows = rows_with_offset()
    rows[position] = value
    for batch_size in (4, 5, ROWS):
        with pytest.raises(FloatingPointError, match=f"^{re.escape(f'{SOURCE} has {named}')}$"):
            reconstruction_metrics(sae, rows, batch_size, SOURCE)


def test_no_rows_are_refused_naming_the_source(tmp_path):
    sae = load_pretrained_sae(gemma_scope(tmp_path / "gs"))
    with pytest.raises(ValueError, match=f"^{re.escape(SOURCE)} has no rows to evaluate on$"):
        reconstruction_metrics(sae, np.zeros((0, D_MODEL), np.float32), 4, SOURCE)


# ----------------------------------------------------------------- encode_and_reconstruct


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_encode_and_reconstruct_is_encode_and_reconstruct(tmp_path, layout):
    sae = load_pretrained_sae(LAYOUTS[layout](tmp_path / "sae"))
    x = torch.from_numpy(rows_with_offset() * 3.0)
    z, x_rec = sae.encode_and_reconstruct(x)
    assert z.shape == (ROWS, D_SAE) and x_rec.shape == (ROWS, D_MODEL)
    assert z.dtype == x_rec.dtype == torch.float32
    assert torch.equal(z, sae.encode(x))
    if isinstance(sae, DictionarySAE):
        assert torch.equal(x_rec, sae.reconstruct(x))
    else:  # prunescope's reconstruct runs the TopKSAE's own forward pass
        torch.testing.assert_close(x_rec, sae.reconstruct(x), rtol=1e-5, atol=1e-5)
    if layout.startswith("saelens_") and "norm" in layout:
        # row normalisation: decoding the latents alone does not give the reconstruction
        with pytest.raises(ValueError, match="normalises each input row"):
            sae.decode(z)
    else:
        torch.testing.assert_close(x_rec, sae.decode(z), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- Table 2

TRAINED = "trained here: dense seed 0"


def record(model, layer, condition, sae, fvu, kind="pretrained", fmt="saelens", **extra):
    return {
        "model": model,
        "layer": layer,
        "condition": condition,
        "sae": sae,
        "sae_kind": kind,
        "sae_format": fmt,
        "fvu": fvu,
        "l0": 10.0 + fvu,
        "alive": 100,
        "d_sae": 1024,
        "n_eval_tokens": 8192,
        **extra,
    }


def table2_records() -> list[dict]:
    trained = dict(kind="trained", fmt="prunescope", fvu_normalised=0.5)  # extra key dropped
    return [
        record("tiny", 2, "dense", TRAINED, 0.10, **trained),
        record("tiny", 2, "wanda-0.4", TRAINED, 0.30, **trained),
        record("tiny", 2, "magnitude-0.2", TRAINED, 0.25, **trained),
        record("tiny", 2, "wanda_2of4-0.5", TRAINED, 0.50, **trained),
        record("tiny", 2, "dense", "Gemma Scope", 0.20, fmt="gemma_scope"),
        record("tiny", 2, "wanda-0.4", "Gemma Scope", 0.80, fmt="gemma_scope"),
        record("tiny", 2, "wanda-0.4", "A orphan", 0.40),  # no dense row of its own
        record("tiny", 1, "dense", TRAINED, 0.05, **trained),
        record("tiny", 1, "wanda-0.4", TRAINED, 0.15, **trained),
        record("big", 7, "dense", TRAINED, 0.5, **trained),
        record("big", 7, "magnitude-0.6", TRAINED, 2.0, **trained),
    ]


def test_transfer_table_columns_order_and_ratio_to_dense():
    records = table2_records()
    random.Random(3).shuffle(records)
    table = transfer_table(records)

    assert list(table.columns) == TABLE2_COLUMNS
    expected = [  # model, layer, sae, condition, method, sparsity, fvu, fvu_over_dense
        ("big", 7, TRAINED, "dense", "dense", 0.0, 0.5, 1.0),
        ("big", 7, TRAINED, "magnitude-0.6", "magnitude", 0.6, 2.0, 4.0),
        ("tiny", 1, TRAINED, "dense", "dense", 0.0, 0.05, 1.0),
        ("tiny", 1, TRAINED, "wanda-0.4", "wanda", 0.4, 0.15, 3.0),
        # trained first within (model, layer), though "A orphan" sorts before it by name
        ("tiny", 2, TRAINED, "dense", "dense", 0.0, 0.10, 1.0),
        ("tiny", 2, TRAINED, "magnitude-0.2", "magnitude", 0.2, 0.25, 2.5),
        ("tiny", 2, TRAINED, "wanda-0.4", "wanda", 0.4, 0.30, 3.0),
        ("tiny", 2, TRAINED, "wanda_2of4-0.5", "wanda_2of4", 0.5, 0.50, 5.0),
        ("tiny", 2, "A orphan", "wanda-0.4", "wanda", 0.4, 0.40, math.nan),
        ("tiny", 2, "Gemma Scope", "dense", "dense", 0.0, 0.20, 1.0),
        ("tiny", 2, "Gemma Scope", "wanda-0.4", "wanda", 0.4, 0.80, 4.0),
    ]
    columns = ["model", "layer", "sae", "condition", "method", "sparsity", "fvu"]
    got = table[[*columns, "fvu_over_dense"]].itertuples(index=False, name=None)
    for row, want in zip(got, expected, strict=True):
        assert row[:7] == want[:7]
        if math.isnan(want[7]):
            assert math.isnan(row[7]), row
        else:
            assert row[7] == pytest.approx(want[7], rel=1e-12), row
    kinds = table.set_index("sae")["sae_kind"].to_dict()
    assert kinds == {TRAINED: "trained", "A orphan": "pretrained", "Gemma Scope": "pretrained"}
    formats = dict(zip(table["sae"], table["sae_format"], strict=True))
    assert formats["Gemma Scope"] == "gemma_scope" and formats[TRAINED] == "prunescope"
    assert (table["l0"] == table["fvu"] + 10.0).all()
    assert (table[["alive", "d_sae", "n_eval_tokens"]] == [100, 1024, 8192]).all().all()


def test_the_dense_fvu_is_that_of_the_same_sae_model_and_layer():
    """Two SAEs on one layer and one SAE label on two models: each ratio uses its own dense."""
    records = [
        record("m", 0, "dense", "S", 2.0),
        record("m", 0, "magnitude-0.5", "S", 3.0),
        record("m", 0, "dense", "T", 4.0),
        record("m", 0, "magnitude-0.5", "T", 3.0),
        record("n", 0, "dense", "S", 1.0),
        record("n", 0, "magnitude-0.5", "S", 3.0),
        record("m", 1, "magnitude-0.5", "S", 3.0),  # no dense at layer 1
    ]
    table = transfer_table(records)
    ratio = {
        (r.model, r.layer, r.sae, r.condition): r.fvu_over_dense
        for r in table.itertuples(index=False)
    }
    assert ratio[("m", 0, "S", "magnitude-0.5")] == 1.5
    assert ratio[("m", 0, "T", "magnitude-0.5")] == 0.75
    assert ratio[("n", 0, "S", "magnitude-0.5")] == 3.0
    assert math.isnan(ratio[("m", 1, "S", "magnitude-0.5")])
    assert pd.isna(table["fvu_over_dense"]).sum() == 1
