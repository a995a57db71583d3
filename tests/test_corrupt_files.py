"""Damaged files: every reader names the file and says what is wrong, before any work.

Each file is written by the library's own writer, then cut to half its bytes, emptied, or
overwritten in part with garbage, or left with a part missing.
"""

from __future__ import annotations

import errno
import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file
from test_activations import PROVENANCE, build, windows
from test_align_net import CLASSES, D_IN
from test_matching import planted_pair
from test_models import DEPTH, VOCAB, tiny_tokenizer
from test_sae import FAST, random_sae
from tiny_lms import tiny_causal_lm

from prunescope.activations import capture_activations, open_cache, read_cache_info
from prunescope.align.data import load_dataset, sample_dnf_dataset, save_dataset
from prunescope.align.experiment import (
    load_mip_solution,
    load_variant_nets,
    save_mip_solution,
    save_variant_nets,
)
from prunescope.align.net import AlignNets, load_nets, load_nets_metadata, save_nets
from prunescope.artifacts import CorruptFileError, open_hdf5, read_npy
from prunescope.checkpoints import save_pruned
from prunescope.io import read_json
from prunescope.match_files import load_matches, save_matches
from prunescope.matching import match_dictionaries
from prunescope.models import load_causal_lm
from prunescope.sae import SAEConfig, load_sae, save_sae, train_sae
from prunescope.settings import PAPER_TAUS


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path):
    path.write_bytes(b"")


def overwrite(path, start: int, length: int = 64, byte: bytes = b"\xff"):
    data = path.read_bytes()
    path.write_bytes(data[:start] + byte * length + data[start + length :])


def garbage_over_header(path):
    overwrite(path, 0)


# Every format gets these three; the message after the path says which it was.
FAULTS = {
    "cut in half": (cut_in_half, "is truncated or corrupt"),
    "garbage over the header": (garbage_over_header, "is truncated or corrupt"),
    "empty": (empty, r"is empty \(0 bytes\)"),
}


def names(path, problem: str) -> str:
    """A pattern for a message that names ``path`` and goes on with ``problem``."""
    return f"{re.escape(str(path))} {problem}.*; delete it and rerun$"


# ----------------------------------------------------------------- activation caches


@pytest.fixture(scope="module")
def cache_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("cache") / "L1.h5"
    splits = {"train": windows(7, 0), "eval": windows(3, 1)}
    capture_activations(build("llama"), 1, splits, path, provenance=PROVENANCE, chunk_rows=16)
    return path.read_bytes()


@pytest.fixture
def cache(tmp_path, cache_bytes):
    path = tmp_path / "L1.h5"
    path.write_bytes(cache_bytes)
    return path


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_cache_is_named_by_every_reader(cache, tmp_path, fault):
    damage, problem = FAULTS[fault]
    damage(cache)
    for read in (read_cache_info, open_cache):
        with pytest.raises(CorruptFileError, match=names(cache, problem)):
            read(cache)
    cfg = SAEConfig(**{**FAST, "batch_size": 16}, steps=40)
    with pytest.raises(CorruptFileError, match=names(cache, problem)):
        train_sae(cache, cfg, "cpu", tmp_path / "sae")
    assert not (tmp_path / "sae").exists()


def test_garbage_over_the_cache_metadata_is_found_on_opening(cache):
    # the attributes are written last, at the end; their metadata carries a checksum
    overwrite(cache, cache.stat().st_size - 1024, length=1024, byte=b"\xde")
    with pytest.raises(CorruptFileError, match=names(cache, "is truncated or corrupt")):
        read_cache_info(cache)


def test_cache_without_a_split_or_its_statistics_is_incomplete(cache):
    with h5py.File(cache, "a") as f:
        del f["eval"]
    with pytest.raises(CorruptFileError, match=names(cache, r"has no 'eval' dataset")):
        open_cache(cache)
    with h5py.File(cache, "a") as f:
        del f.attrs["std"]
    with pytest.raises(CorruptFileError, match=names(cache, r"lacks the attributes \['std'\]")):
        read_cache_info(cache, required_splits=("train",))


def test_cache_whose_rows_disagree_with_its_record_is_refused(cache):
    with h5py.File(cache, "a") as f:
        f.attrs["n_eval_tokens"] = 5
    with pytest.raises(CorruptFileError, match=names(cache, "has 36 'eval' rows but records 5")):
        read_cache_info(cache)


def test_garbage_over_cache_rows_stops_sae_training_at_the_first_step(cache, tmp_path):
    # Raw rows carry no checksum; 0xFF bytes read as NaN, which the loss check catches.
    with h5py.File(cache) as f:
        where = f["train"].id.get_chunk_info(0).byte_offset
    overwrite(cache, where, length=4 * 32 * 16)  # the whole first chunk: 16 rows of 32
    read_cache_info(cache)  # metadata intact: opening cannot tell
    cfg = SAEConfig(**{**FAST, "batch_size": 16}, steps=40)
    message = r"SAE loss is NaN at step \d+ of 40 while training on layer 1 activations in .*L1\.h5"
    with pytest.raises(FloatingPointError, match=message):
        train_sae(cache, cfg, "cpu", tmp_path / "sae")


def test_hdf5_read_errors_inside_the_block_name_the_file(cache):
    with pytest.raises(CorruptFileError, match=names(cache, r"is truncated or corrupt \(bad")):
        with open_hdf5(cache, "activation cache"):
            raise OSError("bad chunk")  # how h5py reports damage met while reading
    with pytest.raises(OSError, match="No space left") as raised:
        with open_hdf5(cache, "activation cache"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not isinstance(raised.value, CorruptFileError)


def test_missing_cache_is_not_called_corrupt(tmp_path):
    (tmp_path / "L1.h5.partial").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"L1\.h5 does not exist \(a \.partial"):
        read_cache_info(tmp_path / "L1.h5")


# ----------------------------------------------------------------- SAE weights and cfg.json


@pytest.fixture
def sae_dir(tmp_path):
    save_sae(random_sae(), SAEConfig(**FAST, steps=40), tmp_path / "sae", {"layer": 1})
    return tmp_path / "sae"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_sae_weights_are_named(sae_dir, fault):
    damage, problem = FAULTS[fault]
    weights = sae_dir / "sae.safetensors"
    damage(weights)
    with pytest.raises(CorruptFileError, match="SAE weights file " + names(weights, problem)):
        load_sae(sae_dir)


def test_garbage_inside_sae_weights_is_found_as_nan(sae_dir):
    weights = sae_dir / "sae.safetensors"
    overwrite(weights, weights.stat().st_size // 2)
    with pytest.raises(CorruptFileError, match=names(weights, r"has NaN in tensor 'W_\w+'")):
        load_sae(sae_dir)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_sae_config_is_named(sae_dir, fault):
    damage, problem = FAULTS[fault]
    cfg = sae_dir / "cfg.json"
    damage(cfg)
    with pytest.raises(CorruptFileError, match="SAE config " + names(cfg, problem)):
        load_sae(sae_dir)


def test_sae_config_that_does_not_fit_the_weights_is_named(sae_dir):
    cfg_path = sae_dir / "cfg.json"
    cfg = read_json(cfg_path)
    cfg_path.write_text(json.dumps({**cfg, "d_sae": 32}))
    weights = sae_dir / "sae.safetensors"
    with pytest.raises(CorruptFileError, match=names(weights, r"has tensors .* but cfg\.json")):
        load_sae(sae_dir)
    del cfg["k"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CorruptFileError, match=names(cfg_path, r"lacks a valid d_model/d_sae/k")):
        load_sae(sae_dir)


def test_sae_weights_missing_a_tensor_are_named(sae_dir):
    weights = sae_dir / "sae.safetensors"
    tensors = load_file(weights)
    del tensors["b_dec"]
    save_file(tensors, weights)
    with pytest.raises(CorruptFileError, match=names(weights, "has tensors")):
        load_sae(sae_dir)


# ----------------------------------------------------------------- match files


@pytest.fixture
def match_file(tmp_path):
    path = tmp_path / "pair.h5"
    save_matches(match_dictionaries(*planted_pair(3), PAPER_TAUS, device="cpu"), path, {})
    return path


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_match_file_is_named(match_file, fault):
    damage, problem = FAULTS[fault]
    damage(match_file)
    with pytest.raises(CorruptFileError, match="match file " + names(match_file, problem)):
        load_matches(match_file)


def test_garbage_over_match_metadata_is_found(match_file):
    # the object headers lie between the superblock and the first data; they carry checksums
    with h5py.File(match_file) as f:
        first_data = min(f[name].id.get_offset() for name in f)
    overwrite(match_file, 512, length=first_data - 512, byte=b"\xde")
    with pytest.raises(CorruptFileError, match=names(match_file, "is truncated or corrupt")):
        load_matches(match_file)


def test_match_file_without_a_dataset_is_incomplete(match_file):
    with h5py.File(match_file, "a") as f:
        del f["mnn"]
    with pytest.raises(CorruptFileError, match=names(match_file, r"lacks the datasets \['mnn'\]")):
        load_matches(match_file)


# ----------------------------------------------------------------- Study ALIGN nets


@pytest.fixture
def nets_file(tmp_path):
    path = tmp_path / "dense.safetensors"
    save_nets(path, AlignNets.initialise(2, D_IN, CLASSES, seed=3), {"seed": "3"})
    return path


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_align_nets_are_named(nets_file, fault):
    damage, problem = FAULTS[fault]
    damage(nets_file)
    for read in (load_nets, load_nets_metadata):
        with pytest.raises(CorruptFileError, match="ALIGN nets file " + names(nets_file, problem)):
            read(nets_file)


def test_garbage_inside_align_nets_is_found_as_nan(nets_file):
    overwrite(nets_file, nets_file.stat().st_size // 2, length=16)
    with pytest.raises(CorruptFileError, match=names(nets_file, "has NaN in tensor")):
        load_nets(nets_file)


def test_align_nets_missing_or_misshapen_parameters_are_named(nets_file):
    tensors = load_file(nets_file)
    save_file({name: t for name, t in tensors.items() if name != "b2"}, nets_file)
    with pytest.raises(CorruptFileError, match=names(nets_file, r"lacks the parameters \['b2'\]")):
        load_nets(nets_file)
    save_file({**tensors, "W2": tensors["W2"][:, :, :-1].contiguous()}, nets_file)
    with pytest.raises(CorruptFileError, match=names(nets_file, "holds parameters that do not")):
        load_nets(nets_file)


def test_pruned_align_nets_without_fitting_masks_are_named(tmp_path):
    nets = AlignNets.initialise(2, D_IN, CLASSES, seed=3)
    path = tmp_path / "pruned.safetensors"
    save_variant_nets(path, nets, np.ones((2, D_IN, D_IN), dtype=bool))
    assert load_variant_nets(path)[1].all()
    save_nets(path, nets)
    with pytest.raises(CorruptFileError, match=names(path, r"lacks the pruning masks")):
        load_variant_nets(path)
    save_variant_nets(path, nets, np.ones((2, D_IN, D_IN - 1), dtype=bool))
    with pytest.raises(CorruptFileError, match=names(path, r"has masks of shape \(2, 8, 7\)")):
        load_variant_nets(path)


# ----------------------------------------------------------------- Study ALIGN arrays


@pytest.fixture
def dataset_file(tmp_path):
    path = tmp_path / "trial0.npz"
    save_dataset(path, sample_dnf_dataset(12, 40, 20, seed=0))
    return path


def mip_solution_file(path, weights):
    frame = pd.DataFrame({"status": ["optimal", "gaplimit"], "bound": [0.5, np.inf]})
    labels = {"task": "dnf12", "structure": "unstructured", "trial": 0, "sparsity": 0.5}
    save_mip_solution(path, weights != 0, weights, frame, **labels)
    return path


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_align_arrays_are_named(dataset_file, tmp_path, fault):
    damage, problem = FAULTS[fault]
    solution = mip_solution_file(tmp_path / "s0.5.npz", np.eye(2))
    hessian = tmp_path / "hessian.npy"
    np.save(hessian, np.eye(4))
    for path, read, what in (
        (dataset_file, load_dataset, "ALIGN dataset"),
        (solution, load_mip_solution, "MIP solution"),
        (hessian, lambda path: read_npy(path, "ALIGN Hessian"), "ALIGN Hessian"),
    ):
        damage(path)
        with pytest.raises(CorruptFileError, match=f"{what} " + names(path, problem)):
            read(path)


def test_garbage_inside_an_align_dataset_fails_its_checksum(dataset_file):
    overwrite(dataset_file, dataset_file.stat().st_size // 2, length=16)
    with pytest.raises(CorruptFileError, match=names(dataset_file, "is truncated or corrupt")):
        load_dataset(dataset_file)


def test_align_arrays_with_a_missing_or_non_finite_array_are_refused(dataset_file, tmp_path):
    arrays = dict(np.load(dataset_file))
    np.savez(dataset_file, **{k: v for k, v in arrays.items() if k != "y_test"})
    with pytest.raises(
        CorruptFileError, match=names(dataset_file, r"lacks the arrays \['y_test'\]")
    ):
        load_dataset(dataset_file)
    solution = mip_solution_file(tmp_path / "s0.5.npz", np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(CorruptFileError, match=names(solution, "has NaN in array 'weights'")):
        load_mip_solution(solution)
    # a bound of inf (no bound proven) is data, not damage
    intact = mip_solution_file(tmp_path / "s0.75.npz", np.eye(2))
    assert np.isinf(load_mip_solution(intact)["neuron_bound"][1])
    hessian = tmp_path / "hessian.npy"
    np.save(hessian, np.full((2, 2), np.inf))
    with pytest.raises(CorruptFileError, match=names(hessian, "has Inf in its values")):
        read_npy(hessian, "ALIGN Hessian")


def test_missing_align_arrays_are_not_called_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="ALIGN dataset .*trial0.npz does not exist"):
        load_dataset(tmp_path / "trial0.npz")


# ----------------------------------------------------------------- model checkpoints


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory) -> dict[str, bytes]:
    """A pruned checkpoint folder of a tiny Llama, written by ``save_pruned``, as bytes."""
    folder = tmp_path_factory.mktemp("checkpoint")
    model = tiny_causal_lm("llama", VOCAB, num_hidden_layers=DEPTH)
    save_pruned(model, tiny_tokenizer(), {"method": "magnitude"}, folder)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture
def checkpoint(tmp_path, checkpoint_files):
    folder = tmp_path / "pruned"
    folder.mkdir()
    for name, data in checkpoint_files.items():
        (folder / name).write_bytes(data)
    return folder


def test_intact_checkpoint_loads(checkpoint):
    model, _ = load_causal_lm(str(checkpoint), device="cpu")
    assert model.config.num_hidden_layers == DEPTH


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("model.safetensors", "model weights file"),
        ("config.json", "model file"),
        ("tokenizer.json", "model file"),
        ("pruning_report.json", "model file"),
    ],
)
def test_damaged_checkpoint_file_is_named(checkpoint, name, what, fault):
    damage, problem = FAULTS[fault]
    damage(checkpoint / name)
    with pytest.raises(CorruptFileError, match=f"{what} " + names(checkpoint / name, problem)):
        load_causal_lm(str(checkpoint), device="cpu")


def test_checkpoint_missing_a_weight_is_refused_not_reinitialised(checkpoint):
    weights = checkpoint / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    message = names(checkpoint, r"lacks the weights model\.layers\.1\.mlp\.down_proj\.weight")
    with pytest.raises(CorruptFileError, match=message):
        load_causal_lm(str(checkpoint), device="cpu")


def test_checkpoint_whose_config_does_not_fit_its_weights_is_refused(checkpoint):
    config = read_json(checkpoint / "config.json")
    (checkpoint / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    message = names(checkpoint, r"has model\.layers\.0\.mlp\.[\w.]+ of shape .* implies")
    with pytest.raises(CorruptFileError, match=message):
        load_causal_lm(str(checkpoint), device="cpu")


def test_checkpoint_without_weights_is_named(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(checkpoint))} has no weights"):
        load_causal_lm(str(checkpoint), device="cpu")
