"""The activation cache: rows, float64 stats, chunking, NaN refusal, damaged files, and
the token digests that show two caches hold the same tokens row for row."""

from __future__ import annotations

import hashlib
import re

import h5py
import numpy as np
import pytest
import torch
from tiny_lms import tiny_causal_lm

from prunescope.activations import (
    DEFAULT_CHUNK_ROWS,
    SETTINGS_ATTR,
    TOKENS_DIGEST_ATTR,
    ChunkWriter,
    RunningMoments,
    StaleCacheError,
    aligned_eval_splits,
    all_finite,
    capture_activations,
    check_all_token_aligned,
    check_capture_settings,
    check_token_aligned,
    open_cache,
    read_cache_info,
    setting_changes,
    settings_record,
)
from prunescope.artifacts import CorruptFileError
from prunescope.errors import UserInputError
from prunescope.sae import SAEConfig, train_sae

VOCAB = 80
CONTEXT = 12
PROVENANCE = {"model": "tiny", "condition": "wanda-0.5", "corpus": "stdlib", "seed": 3}


def build(arch: str) -> torch.nn.Module:
    return tiny_causal_lm(arch, VOCAB, max_position_embeddings=32)


def windows(n: int, seed: int, low: int = 0) -> torch.Tensor:
    return torch.randint(low, VOCAB, (n, CONTEXT), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def splits() -> dict[str, torch.Tensor]:
    return {"train": windows(7, 0), "eval": windows(3, 1)}


def reference_rows(model, ids: torch.Tensor, layer: int, skip: int) -> np.ndarray:
    with torch.inference_mode():
        hidden = model(ids, output_hidden_states=True).hidden_states[layer + 1]
    return hidden[:, skip:].reshape(-1, hidden.shape[-1]).float().numpy()


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("skip", [0, 1])
def test_rows_are_the_block_outputs_in_window_order(tmp_path, splits, arch, skip):
    model = build(arch)
    out = tmp_path / "acts" / "L1.h5"
    summary = capture_activations(
        model, 1, splits, out, provenance=PROVENANCE, batch_size=3, skip_positions=skip
    )
    rows_per_window = CONTEXT - skip
    assert summary["n_train_tokens"] == 7 * rows_per_window
    with open_cache(out) as f:
        for name, ids in splits.items():
            stored = f[name][:]
            assert stored.dtype == np.float32 and stored.shape == (len(ids) * rows_per_window, 32)
            np.testing.assert_allclose(stored, reference_rows(model, ids, 1, skip), rtol=0, atol=0)
    assert not out.with_name("L1.h5.partial").exists()


@pytest.mark.parametrize("chunk_rows", [1, 5, 16, 1000])
def test_rows_are_identical_whatever_the_chunking(tmp_path, splits, chunk_rows):
    model = build("llama")
    out = tmp_path / "L1.h5"
    capture_activations(
        model,
        1,
        splits,
        out,
        provenance=PROVENANCE,
        batch_size=2,
        skip_positions=1,
        chunk_rows=chunk_rows,
    )
    with open_cache(out) as f:
        for name, ids in splits.items():
            assert f[name].chunks[0] == min(chunk_rows, len(ids) * (CONTEXT - 1))
            np.testing.assert_array_equal(f[name][:], reference_rows(model, ids, 1, 1))


@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 23])
def test_chunk_writer_matches_plain_slice_writes(tmp_path, chunk_rows):
    rng = np.random.default_rng(chunk_rows)
    rows = rng.standard_normal((23, 6)).astype(np.float32)
    with h5py.File(tmp_path / "w.h5", "w") as f:
        dataset = f.create_dataset("x", shape=rows.shape, dtype="float32", chunks=(chunk_rows, 6))
        writer = ChunkWriter(dataset)
        for part in np.split(rows, [0, 3, 4, 11, 11, 20]):
            writer.append(part)
        writer.close()
        assert writer.rows_written == 23
        np.testing.assert_array_equal(dataset[:], rows)
        with pytest.raises(ValueError, match="overflows"):
            writer.append(rows[:1])


def test_chunk_writer_refuses_filtered_or_unchunked_datasets(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as f:
        packed = f.create_dataset("gz", shape=(8, 4), dtype="float32", chunks=(4, 4), compression=1)
        with pytest.raises(ValueError, match="no filters"):
            ChunkWriter(packed)
        for name, chunks in (("plain", None), ("cols", (4, 2))):
            dataset = f.create_dataset(name, shape=(8, 4), dtype="float32", chunks=chunks)
            with pytest.raises(ValueError, match="chunked by whole rows"):
                ChunkWriter(dataset)


def test_all_finite_agrees_with_the_elementwise_test():
    rng = np.random.default_rng(0)
    cases = [torch.empty(0, 3), torch.full((4, 3), 3e38)]  # the second overflows its sum
    for bad in (float("nan"), float("inf"), -float("inf")):
        for _ in range(5):
            values = torch.from_numpy(rng.standard_normal((4, 7, 3)).astype(np.float32))
            cases.append(values.clone())
            values.view(-1)[rng.integers(values.numel())] = bad
            cases.append(values)
    both_infinities = torch.zeros(2, 5)
    both_infinities[0, 1], both_infinities[1, 3] = float("inf"), -float("inf")
    cases.append(both_infinities)
    for values in cases:
        assert all_finite(values) == bool(torch.isfinite(values).all())
        strided = values[:, 1:]  # capture checks a view that skips the BOS position
        assert all_finite(strided) == bool(torch.isfinite(strided).all())


def test_stats_are_float64_moments_of_the_first_rows(tmp_path, splits):
    model = build("llama")
    out = tmp_path / "L0.h5"
    capture_activations(
        model, 0, splits, out, provenance=PROVENANCE, batch_size=2, stats_samples=30
    )
    first = reference_rows(model, splits["train"], 0, 0)[:30].astype(np.float64)
    info = read_cache_info(out)
    assert info["mean"].dtype == np.float64 and info["attrs"]["stats_samples"] == 30
    np.testing.assert_allclose(info["mean"], first.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(info["std"], first.std(axis=0), rtol=1e-12, atol=1e-12)


def test_stats_use_every_train_row_when_fewer_than_asked(tmp_path, splits):
    out = tmp_path / "L0.h5"
    capture_activations(build("llama"), 0, splits, out, provenance=PROVENANCE)
    assert read_cache_info(out)["attrs"]["stats_samples"] == 7 * CONTEXT


def test_running_moments_match_numpy_despite_a_huge_offset():
    rng = np.random.default_rng(0)
    rows = (1e4 + rng.normal(size=(257, 5)) * np.array([1e-3, 1, 10, 0.5, 2])).astype(np.float32)
    moments = RunningMoments(5)
    for part in np.array_split(rows, [1, 50, 51, 200]):
        moments.update(part)
    exact = rows.astype(np.float64)
    assert moments.count == 257
    np.testing.assert_allclose(moments.mean, exact.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(moments.std, exact.std(axis=0), rtol=1e-9)


def test_running_moments_leave_their_input_alone_and_match_the_plain_formula():
    rows = np.random.default_rng(1).normal(3.0, 2.0, size=(40, 6))
    kept = rows.copy()
    moments = RunningMoments(6)
    moments.update(rows)
    assert np.array_equal(rows, kept)
    assert np.array_equal(moments.mean, rows.mean(axis=0))
    assert np.array_equal(moments.std, np.sqrt(np.square(rows - rows.mean(axis=0)).sum(0) / 40))


def test_datasets_are_chunked_by_rows_and_attrs_record_provenance(tmp_path, splits):
    out = tmp_path / "L2.h5"
    capture_activations(
        build("llama"), 2, splits, out, provenance=PROVENANCE, chunk_rows=16, skip_positions=1
    )
    with h5py.File(out) as f:
        assert f["train"].chunks == (16, 32) and f["eval"].chunks == (16, 32)
    attrs = read_cache_info(out)["attrs"]
    expected = {
        **PROVENANCE,
        "layer": 2,
        "d_model": 32,
        "context": CONTEXT,
        "skip_positions": 1,
        "n_train_tokens": 77,
        "n_eval_tokens": 33,
        "format_version": 1,
        "dtype": "float32",
    }
    assert {key: attrs[key] for key in expected} == expected

    small = tmp_path / "default.h5"
    capture_activations(build("llama"), 0, splits, small, provenance={})
    with h5py.File(small) as f:
        assert f["train"].chunks == (min(DEFAULT_CHUNK_ROWS, 7 * CONTEXT), 32)


def test_nan_activations_abort_and_leave_no_file(tmp_path):
    model = build("llama")
    poisoned = 5
    with torch.no_grad():
        model.model.embed_tokens.weight[poisoned] = float("nan")
    clean_train = windows(4, 0, low=poisoned + 1)
    eval_ids = windows(3, 1, low=poisoned + 1)
    eval_ids[2, 6] = poisoned
    out = tmp_path / "L1.h5"
    message = r"layer 1 .*wanda-0\.5.* NaN at window 2, token position \d+ of split 'eval'"
    with pytest.raises(FloatingPointError, match=message):
        capture_activations(
            model, 1, {"train": clean_train, "eval": eval_ids}, out, provenance=PROVENANCE
        )
    assert list(tmp_path.iterdir()) == []


def test_inf_activations_are_named_with_layer_window_and_position(tmp_path, splits):
    model = build("llama")

    def overflow(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[0] == 3:  # only in the last train batch: windows 4, 5 and 6
            hidden[1, 9, 3] = float("inf")

    handle = model.model.layers[2].register_forward_hook(overflow)
    message = (
        r"layer 2 activations \(model tiny, condition wanda-0\.5\) contain Inf at window 5, "
        r"token position 9 of split 'train' \(batch of windows 4-6\)"
    )
    with pytest.raises(FloatingPointError, match=message):
        capture_activations(
            model,
            2,
            splits,
            tmp_path / "L2.h5",
            provenance=PROVENANCE,
            batch_size=4,
            skip_positions=1,
        )
    handle.remove()
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_refused_before_any_file(tmp_path, splits):
    model = build("llama")
    out = tmp_path / "x.h5"
    cases = [
        (dict(splits=splits, layer=3), r"layer 3 .*0\.\.2"),
        (dict(splits={"eval": splits["eval"]}), "'train'"),
        (dict(splits={**splits, "eval": windows(2, 5)[:, :6]}), "context"),
        (dict(splits=splits, skip_positions=CONTEXT), "skip_positions"),
        (dict(splits={"train": splits["train"] + VOCAB}), "vocabulary"),
        (dict(splits=splits, provenance={"layer": 4}), "'layer' clashes"),
        (dict(splits=splits, provenance={"tokens_sha256_eval": "0"}), "'tokens_sha256_eval'"),
        (dict(splits=splits, provenance={"model": None}), "'model'"),
    ]
    for overrides, message in cases:
        kwargs = {"layer": 0, "provenance": PROVENANCE, **overrides}
        with pytest.raises(ValueError, match=message):
            capture_activations(model, out_path=out, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_truncated_or_incomplete_cache_gets_a_clear_error(tmp_path, splits):
    out = tmp_path / "L0.h5"
    capture_activations(build("llama"), 0, splits, out, provenance=PROVENANCE)
    data = out.read_bytes()

    out.write_bytes(data[: len(data) // 2])
    for reader in (read_cache_info, open_cache):
        with pytest.raises(CorruptFileError, match=r"L0\.h5 is truncated or corrupt"):
            reader(out)

    out.write_bytes(data)
    with h5py.File(out, "a") as f:
        del f["eval"]
    with pytest.raises(CorruptFileError, match=r"L0\.h5 has no 'eval' dataset"):
        read_cache_info(out)
    assert read_cache_info(out, required_splits=("train",))["splits"] == {"train": 7 * CONTEXT}

    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_cache_info(tmp_path / "missing.h5")


SETTINGS = {
    "corpus": "stdlib",
    "dtype": "float32",
    "activations": {"context": CONTEXT, "batch_size": 3, "skip_bos": True},
}


def test_setting_changes_name_every_leaf_that_differs():
    now = {**SETTINGS, "dtype": "bfloat16", "activations": {"context": CONTEXT, "skip_bos": True}}
    assert list(setting_changes(SETTINGS, now)) == [
        "activations.batch_size: 3 -> None",
        "dtype: 'float32' -> 'bfloat16'",
    ]
    assert list(setting_changes(SETTINGS, dict(reversed(SETTINGS.items())))) == []


def test_a_cache_is_refused_by_a_config_that_asks_for_other_capture_settings(splits, tmp_path):
    out = tmp_path / "L1.h5"
    provenance = {**PROVENANCE, SETTINGS_ATTR: settings_record(SETTINGS)}
    capture_activations(build("llama"), 1, splits, out, provenance=provenance, batch_size=3)
    # the same settings in another key order pass
    reordered = {key: SETTINGS[key] for key in sorted(SETTINGS, reverse=True)}
    check_capture_settings(read_cache_info(out), reordered)
    with open_cache(out, capture_settings=reordered) as cache:
        assert cache["eval"].shape[0] > 0
    edited = {**SETTINGS, "activations": {**SETTINGS["activations"], "batch_size": 4}}
    message = "was captured with other settings .*activations.batch_size: 3 -> 4.*--forcerun"
    with pytest.raises(StaleCacheError, match=message):
        check_capture_settings(read_cache_info(out), edited)
    with pytest.raises(StaleCacheError, match=message):
        open_cache(out, capture_settings=edited)


def test_a_cache_that_records_no_capture_settings_is_not_checked(splits, tmp_path):
    out = tmp_path / "L1.h5"
    capture_activations(build("llama"), 1, splits, out, provenance=PROVENANCE, batch_size=3)
    check_capture_settings(read_cache_info(out), SETTINGS)


def test_sae_training_refuses_a_stale_cache_before_writing_anything(splits, tmp_path):
    out = tmp_path / "L1.h5"
    provenance = {**PROVENANCE, SETTINGS_ATTR: settings_record(SETTINGS)}
    capture_activations(build("llama"), 1, splits, out, provenance=provenance, batch_size=3)
    edited = {**SETTINGS, "dtype": "bfloat16"}
    with pytest.raises(StaleCacheError, match="dtype: 'float32' -> 'bfloat16'"):
        train_sae(
            out,
            SAEConfig(steps=40, warmup_steps=4, batch_size=16, seed=0),
            "cpu",
            tmp_path / "sae",
            capture_settings=edited,
        )
    assert not (tmp_path / "sae").exists()


def kept_tokens_sha256(ids: torch.Tensor, skip: int) -> str:
    """The digest a split's rows should record, one token at a time: every window's ids
    after the skipped positions, as int64 little-endian bytes."""
    digest = hashlib.sha256()
    for window in ids.tolist():
        for token in window[skip:]:
            digest.update(token.to_bytes(8, "little", signed=True))
    return digest.hexdigest()


@pytest.mark.parametrize("skip", [0, 1])
def test_token_digests_are_those_of_the_kept_tokens_whatever_the_batch_size(tmp_path, splits, skip):
    captured = {}
    for batch_size in (1, 3, 7):
        out = tmp_path / f"b{batch_size}.h5"
        capture_activations(
            build("llama"),
            1,
            splits,
            out,
            provenance=PROVENANCE,
            batch_size=batch_size,
            skip_positions=skip,
        )
        attrs = read_cache_info(out)["attrs"]
        for name, ids in splits.items():
            assert attrs[TOKENS_DIGEST_ATTR.format(split=name)] == kept_tokens_sha256(ids, skip)
        with open_cache(out) as f:
            captured[batch_size] = f["eval"][:]
    np.testing.assert_array_equal(captured[1], captured[3])
    np.testing.assert_array_equal(captured[7], captured[3])


def test_caches_of_the_same_tokens_from_different_models_are_aligned(tmp_path, splits):
    paths = []
    for arch, seed in (("llama", 0), ("llama", 1), ("gemma3", 0)):
        model = tiny_causal_lm(arch, VOCAB, max_position_embeddings=32, seed=seed)
        paths.append(tmp_path / f"{arch}{seed}.h5")
        capture_activations(
            model, 1, splits, paths[-1], provenance=PROVENANCE, batch_size=4, skip_positions=1
        )
    with open_cache(paths[0]) as a, open_cache(paths[1]) as b:
        assert not np.allclose(a["eval"][:], b["eval"][:])  # other models, same tokens
    assert check_token_aligned(paths[0], paths[1]) == kept_tokens_sha256(splits["eval"], 1)
    train = check_token_aligned(paths[0], paths[2], split="train")
    assert train == kept_tokens_sha256(splits["train"], 1)
    assert check_all_token_aligned(paths) == kept_tokens_sha256(splits["eval"], 1)


def bos_windows(stream: torch.Tensor, context: int) -> torch.Tensor:
    """``stream`` cut into windows of a BOS (token 0) and ``context - 1`` stream tokens."""
    body = stream.view(-1, context - 1)
    return torch.cat([torch.zeros(len(body), 1, dtype=torch.long), body], dim=1)


def other_tokens(case: str, splits: dict) -> tuple[dict, dict, int, str]:
    """Dense splits (captured skipping the BOS), the other capture's splits and skipped
    positions, and the differences the refusal lists."""
    if case == "other windows":  # the same 40 tokens after the BOS, cut at other places
        stream = torch.arange(1, 41)
        ten, five = bos_windows(stream, 11), bos_windows(stream, 6)
        return {"train": ten, "eval": ten}, {"train": five, "eval": five}, 1, "context 11 and 6"
    digests = r"token digests [0-9a-f]{12}… and [0-9a-f]{12}…"
    other, skip, differences = {
        "fewer windows": ({**splits, "eval": splits["eval"][:2]}, 1, f"{digests}; rows 33 and 22"),
        "other text": ({**splits, "eval": windows(3, 9)}, 1, digests),
        "BOS kept": (splits, 0, f"{digests}; rows 33 and 36; skipped positions 1 and 0"),
    }[case]
    return splits, other, skip, differences


@pytest.mark.parametrize("case", ["fewer windows", "other text", "BOS kept", "other windows"])
def test_caches_of_other_tokens_are_refused_naming_both(tmp_path, splits, case):
    dense_splits, other, skip, differences = other_tokens(case, splits)
    model = build("llama")
    dense, pruned = tmp_path / "dense" / "L1.h5", tmp_path / "wanda-0.4" / "L1.h5"
    capture_activations(model, 1, dense_splits, dense, provenance=PROVENANCE, skip_positions=1)
    capture_activations(model, 1, other, pruned, provenance=PROVENANCE, skip_positions=skip)
    message = (
        f"^activation caches {re.escape(str(dense))} and {re.escape(str(pruned))} hold "
        rf"different tokens in their 'eval' split \({differences}\); recapture both "
        "with the same activations settings$"
    )
    with pytest.raises(UserInputError, match=message):
        check_token_aligned(dense, pruned)
    with pytest.raises(UserInputError, match=message):
        check_all_token_aligned([dense, dense, pruned])
    with pytest.raises(UserInputError, match=message), aligned_eval_splits(dense, pruned):
        pytest.fail("misaligned caches were opened")


def test_aligned_eval_splits_open_both_eval_splits_with_their_names(tmp_path, splits):
    model = build("llama")
    dense, pruned = tmp_path / "dense" / "L1.h5", tmp_path / "wanda-0.4" / "L1.h5"
    for path in (dense, pruned):
        capture_activations(model, 1, splits, path, provenance=PROVENANCE, skip_positions=1)
    with aligned_eval_splits(dense, pruned) as (a, b, names):
        np.testing.assert_array_equal(a[:], b[:])
        assert names == (f"the eval split of {dense}", f"the eval split of {pruned}")


def test_a_cache_without_token_digests_is_refused_by_name_but_still_readable(tmp_path, splits):
    model = build("llama")
    new, old = tmp_path / "new.h5", tmp_path / "old.h5"
    for path in (new, old):
        capture_activations(model, 1, splits, path, provenance=PROVENANCE)
    with h5py.File(old, "a") as f:  # as written before token digests were recorded
        for name in splits:
            del f.attrs[TOKENS_DIGEST_ATTR.format(split=name)]
    assert read_cache_info(old)["splits"] == read_cache_info(new)["splits"]
    message = (
        f"activation cache {re.escape(str(old))} records no token digest for its 'eval' "
        r"split .*rerun with --forcerun capture_activations\)$"
    )
    for pair in ((new, old), (old, new)):
        with pytest.raises(UserInputError, match=message) as refused:
            check_token_aligned(*pair)
        assert not isinstance(refused.value, CorruptFileError)


def test_a_garbled_or_damaged_cache_is_named_by_the_token_check(tmp_path, splits):
    good, bad = tmp_path / "good.h5", tmp_path / "bad.h5"
    for path in (good, bad):
        capture_activations(build("llama"), 1, splits, path, provenance=PROVENANCE)
    with h5py.File(bad, "a") as f:
        f.attrs[TOKENS_DIGEST_ATTR.format(split="eval")] = "not a digest"
    with pytest.raises(CorruptFileError, match=rf"{re.escape(str(bad))} has a malformed token"):
        check_token_aligned(good, bad)
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match=rf"{re.escape(str(bad))} is truncated"):
        check_token_aligned(good, bad)
    with pytest.raises(ValueError, match="at least two caches"):
        check_all_token_aligned([good])
