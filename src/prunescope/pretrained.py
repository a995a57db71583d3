"""Pretrained SAEs researchers already have, loaded as encoders that survival can use.

Five layouts are read, each told apart by the names of its tensors and the keys of its
config, never by file names (prunescope's own folder and a sparsify folder both hold
``cfg.json`` + ``sae.safetensors``):

- ``gemma_scope``: Gemma Scope for Gemma 2, ``params.npz`` with ``W_enc (d_model, d_sae)``,
  ``W_dec``, ``b_enc``, ``b_dec``, ``threshold`` and no config;
- ``gemma_scope_2``: Gemma Scope 2 for Gemma 3, ``params.safetensors`` with the same
  tensors in lower case (``w_enc``, ``w_dec``, ...) and a ``config.json`` beside it;
- ``saelens``: a folder as SAELens ``save_model`` writes it, ``cfg.json`` (``d_in``,
  ``d_sae``, ``architecture``, ...) + ``sae_weights.safetensors``;
- ``sparsify``: an EleutherAI sparsify folder, ``cfg.json`` (``d_in``, ``k``, ...) +
  ``sae.safetensors`` with ``encoder.weight (num_latents, d_in)``, ``encoder.bias``,
  ``W_dec``, ``b_dec``;
- ``prunescope``: a folder written by ``prunescope.sae.save_sae``.

Every SAE encodes activations exactly as the model produced them and returns dense,
non-negative ``(rows, d_sae)`` float32 latents, whatever dtype its weights were stored in.
A setting whose effect cannot be reproduced from the files (an input scaling factor that
was never folded into the weights, a transcoder read as an SAE) is refused by name rather
than approximated, since a survival number from a subtly different encoder looks the same
as a correct one.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunescope.artifacts import (
    CorruptFileError,
    damaged,
    nan_or_inf,
    read_npz,
    read_safetensors,
    read_safetensors_header,
    reading,
    require_file,
)
from prunescope.errors import UserInputError, keyed, listed
from prunescope.io import atomic_path, read_json, write_json
from prunescope.models import pick_device
from prunescope.sae import TopKSAE, load_sae
from prunescope.survival import as_latent_encoder

FORMATS = ("gemma_scope", "gemma_scope_2", "saelens", "sparsify", "prunescope")
WEIGHT_FILES = ("params.npz", "params.safetensors", "sae_weights.safetensors", "sae.safetensors")
"""Where each layout keeps its weights; a folder must hold exactly one of them."""
CONFIG_FILES = ("cfg.json", "config.json")
WEIGHTS = "SAE weights file"
CONFIG = "SAE config"
LAYOUTS_TOLD = (
    "Gemma Scope params.npz, Gemma Scope 2 params.safetensors, SAELens cfg.json + "
    "sae_weights.safetensors, sparsify cfg.json + sae.safetensors, or a prunescope SAE folder"
)
_REBUILD = "; delete it and rerun"
_COMMIT = re.compile(r"[0-9a-f]{40}")


# ----------------------------------------------------------------- where the files are


@dataclass(frozen=True)
class SAESource:
    """Where an SAE's files came from: ``local`` is the weights file or folder here; a hub
    SAE also has its repository, the path inside it, the requested revision and the commit
    its files were taken from."""

    local: Path
    repo: str | None = None
    path: str | None = None
    revision: str | None = None
    commit: str | None = None

    def describe(self) -> str:
        if self.repo is None:
            return str(self.local)
        at = f"@{self.revision}" if self.revision else ""
        return f"hub repo {self.repo}{at} path {self.path or '/'}"

    def to_dict(self) -> dict:
        """JSON-ready provenance: the hub coordinates when there are any, and the local path."""
        keys = ("repo", "path", "revision", "commit")
        hub = {name: getattr(self, name) for name in keys if getattr(self, name) is not None}
        return {**hub, "local": str(self.local)}


def resolve_sae_source(spec, key: str | None = None) -> SAESource:
    """The files of the SAE that ``spec`` names: a local file or folder path, or a mapping
    ``{repo: ..., path: ..., revision: optional}`` naming a folder (or weights file) in a
    Hugging Face hub repository, whose files are downloaded through the hub cache.

    Only the files an SAE needs are downloaded (its config and one weights file), never the
    whole repository: Gemma Scope repositories hold hundreds of gigabytes.
    """
    with _led_by(key):
        if isinstance(spec, str | os.PathLike):
            return SAESource(local=_local_path(spec))
        if isinstance(spec, dict):
            repo, path, revision = _hub_spec(spec)
            weights = _download_sae_files(repo, path, revision)
            return SAESource(weights, repo, path, revision, _commit_of(weights))
        raise UserInputError(
            f"SAE source {spec!r} is neither a path nor a mapping {{repo: ..., path: ...}}"
        )


def _local_path(spec: str | os.PathLike) -> Path:
    path = Path(spec).expanduser()
    if path.exists():
        return path
    looks_like_repo = isinstance(spec, str) and re.fullmatch(r"[\w.-]+/[\w.-]+", spec)
    hint = f" (for a hub repository write {{repo: {spec}, path: <folder>}})"
    raise FileNotFoundError(f"SAE {path} does not exist{hint if looks_like_repo else ''}")


def _hub_spec(spec: dict) -> tuple[str, str, str | None]:
    """(repo, path inside it, revision) of a hub spec, refusing anything else in it."""
    unknown = sorted(set(spec) - {"repo", "path", "revision"})
    if unknown:
        raise UserInputError(
            f"SAE source {spec!r} has the keys {listed(unknown)}; a hub SAE takes repo, "
            "path and an optional revision"
        )
    repo, path, revision = spec.get("repo"), spec.get("path", ""), spec.get("revision")
    if not isinstance(repo, str) or not repo:
        raise UserInputError(f"SAE source {spec!r} names no repo")
    if not isinstance(path, str) or (revision is not None and not isinstance(revision, str)):
        raise UserInputError(f"SAE source {spec!r}: path and revision must be strings")
    return repo, path.strip("/"), revision


def _download_sae_files(repo: str, path: str, revision: str | None) -> Path:
    """The weights file of the SAE at ``path`` in ``repo``, downloaded with the configs
    beside it (each absent one skipped); a path naming a weights file is taken as given."""
    from prunescope.hub import hub_errors

    folder = sae_folder_in_repo(path)
    candidates = [path] if folder != path else [_join(folder, name) for name in WEIGHT_FILES]
    try:
        weights = _first_downloaded(repo, candidates, revision)
        configs = CONFIG_FILES if weights is not None else ()
        for name in configs:
            _optional_download(repo, _join(folder, name), revision, [])
    except hub_errors() as err:
        raise _hub_sentence(err, repo, folder, revision) from err
    if weights is None:
        at = f" at revision {revision}" if revision else ""
        raise UserInputError(
            f"hub repo {repo}{at} holds no SAE weights under {path or '/'!r} (none of "
            f"{', '.join(candidates)}); check the path, a folder in that repository"
        )
    return Path(weights)


def _first_downloaded(repo: str, filenames: list[str], revision: str | None) -> str | None:
    """The local path of the first of ``filenames`` that ``repo`` has, or None. Offline (or
    with the hub unreachable) a miss may only mean "not in the cache", so when nothing was
    found that miss is raised, to be told as such."""
    not_cached: list[BaseException] = []
    for filename in filenames:
        local = _optional_download(repo, filename, revision, not_cached)
        if local is not None:
            return local
    if not_cached:
        raise not_cached[0]
    return None


def sae_folder_in_repo(path: str) -> str:
    """The folder of an SAE in a hub repository: ``path`` itself, or the folder of the
    weights file it names."""
    if not path.endswith((".npz", ".safetensors")):
        return path
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _optional_download(
    repo: str, filename: str, revision: str | None, not_cached: list[BaseException]
) -> str | None:
    """The local path of one file of ``repo``, or None when the hub (or, offline, the
    cache) has no such file; a cache miss is noted in ``not_cached``."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return huggingface_hub.hf_hub_download(repo, filename, revision=revision)
    except LocalEntryNotFoundError as err:
        not_cached.append(err)
    except EntryNotFoundError:
        pass
    return None


def _hub_sentence(
    err: BaseException, repo: str, folder: str, revision: str | None
) -> UserInputError:
    """``hub.hub_failure``'s sentence, with its download command narrowed to the SAE's own
    folder: the whole repository of a Gemma Scope release is hundreds of gigabytes."""
    from prunescope.hub import hub_failure

    failure = hub_failure(err, repo=repo, kind="model", key="the SAE source", revision=revision)
    whole = f"hf download {repo}"
    narrowed = f"{whole} --include '{_join(folder, '*')}'"
    fix = failure.fix.replace(f"`{whole}", f"`{narrowed}")
    at = f" at revision {revision}" if revision else ""
    return UserInputError(
        f"hub SAE {repo}{at} path {folder or '/'} could not be downloaded: {failure.reason}; {fix}"
    )


def _commit_of(path: Path) -> str | None:
    """The commit a file in the hub cache belongs to (``.../snapshots/<commit>/...``)."""
    parts = path.parts
    for index, part in enumerate(parts[:-1]):
        if part == "snapshots" and _COMMIT.fullmatch(parts[index + 1]):
            return parts[index + 1]
    return None


# ----------------------------------------------------------------- what the files are


@dataclass(frozen=True)
class SAEFiles:
    """The weights file of an SAE, the names of its tensors and the configs beside it
    (file name -> parsed JSON object)."""

    weights: Path
    tensor_names: tuple[str, ...]
    configs: dict[str, dict] = field(default_factory=dict)

    def config_path(self, name: str) -> Path:
        return self.weights.parent / name


def find_sae_files(path) -> SAEFiles:
    """The files of the SAE at a local ``path``: a weights file, or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        weights = _weights_file_in(path)
    elif path.is_file():
        weights = path
    else:
        raise FileNotFoundError(f"SAE {path} does not exist")
    return SAEFiles(weights, _tensor_names(weights), _read_configs(weights.parent))


def _weights_file_in(folder: Path) -> Path:
    present = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if len(present) == 1:
        return present[0]
    if present:
        raise UserInputError(
            f"SAE folder {folder} holds several weights files ({listed([p.name for p in present])}"
            "); point at the one meant"
        )
    held = sorted(p.name for p in folder.iterdir())
    holding = f"it holds {listed(held, shown=6)}" if held else "it is empty"
    raise UserInputError(
        f"SAE folder {folder} holds no SAE weights file (none of {', '.join(WEIGHT_FILES)}); "
        f"{holding}"
    )


def _tensor_names(weights: Path) -> tuple[str, ...]:
    """Names of the tensors in a weights file, from its header or zip index alone."""
    if weights.suffix == ".npz":
        with reading(weights, WEIGHTS), np.load(weights, allow_pickle=False) as archive:
            return tuple(archive.files)
    if weights.suffix == ".safetensors":
        shapes, _ = read_safetensors_header(weights, WEIGHTS)
        return tuple(shapes)
    raise UserInputError(
        f"{WEIGHTS} {weights} is neither .npz nor .safetensors; an SAE is one of: {LAYOUTS_TOLD}"
    )


def _read_configs(folder: Path) -> dict[str, dict]:
    configs = {}
    for name in CONFIG_FILES:
        path = folder / name
        if path.is_file():
            config = read_json(path, CONFIG)
            if not isinstance(config, dict):
                raise UserInputError(f"{CONFIG} {path} is not a JSON object")
            configs[name] = config
    return configs


def detect_format(path) -> str:
    """Which of ``FORMATS`` the SAE at a local ``path`` (weights file or folder) is in,
    read from its tensor names and config keys; an unknown layout is refused naming them."""
    files = find_sae_files(path)
    found = _classify(files)
    if found is None:
        raise _unknown_layout(files)
    return found


def _classify(files: SAEFiles) -> str | None:
    names = set(files.tensor_names)
    cfg = files.configs.get("cfg.json")
    if cfg is not None and {"mean", "std"} <= names and {"d_model", "d_sae", "k"} <= cfg.keys():
        return "prunescope"
    if "encoder.weight" in names and cfg is not None:
        return "sparsify"
    if "w_enc" in names:
        return "gemma_scope_2"
    if "W_enc" in names and cfg is not None and "d_in" in cfg:
        return "saelens"
    # Without cfg.json, SAELens JumpReLU tensors look just like Gemma Scope's, and reading
    # one as the other silently drops apply_b_dec_to_input: only an .npz (which SAELens
    # never writes) or a Gemma Scope config.json settles it.
    gemma_evidence = files.weights.suffix == ".npz" or "config.json" in files.configs
    if "W_enc" in names and cfg is None and gemma_evidence:
        return "gemma_scope"
    return None


def _unknown_layout(files: SAEFiles) -> UserInputError:
    configs = "; ".join(
        f"{name} has the keys {listed(sorted(config), shown=8)}"
        for name, config in files.configs.items()
    )
    beside = f" ({configs})" if configs else " (with no cfg.json or config.json beside it)"
    return UserInputError(
        f"{WEIGHTS} {files.weights} holds the tensors "
        f"{listed(sorted(files.tensor_names), shown=8)}{beside}, which matches no SAE layout "
        f"prunescope reads: {LAYOUTS_TOLD}"
    )


# ----------------------------------------------------------------- the encoders


@dataclass(frozen=True)
class Encoding:
    """How latents come from activations, besides the weights.

    ``activation``: "relu", "jumprelu" (needs a threshold), "topk" or "groupmax" (need k).
    ``subtract_b_dec``: the input minus ``b_dec`` is encoded (SAELens apply_b_dec_to_input,
    sparsify). ``row_norm``: SAELens' per-row input normalisation, "none",
    "constant_norm_rescale" or "layer_norm". ``rescale_by_decoder_norm``: SAELens TopK
    multiplies pre-activations by the decoder row norms before choosing the top k.
    """

    activation: str
    k: int | None = None
    subtract_b_dec: bool = False
    row_norm: str = "none"
    rescale_by_decoder_norm: bool = False


class PretrainedSAE(nn.Module):
    """An SAE read from files: ``d_model``, ``d_sae``, ``encode``, ``decode``, ``reconstruct``,
    its ``format`` (one of ``FORMATS``), ``source`` and what its config says about it
    (``info``: hook, model, ...). ``encode`` satisfies ``survival.LatentEncoder``."""

    def __init__(self, fmt: str, source: SAESource, d_model: int, d_sae: int, info: dict):
        super().__init__()
        self.format, self.source = fmt, source
        self.d_model, self.d_sae = d_model, d_sae
        self.info = info

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense non-negative float32 ``(rows, d_sae)`` latents of raw activations ``x``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Activations reconstructed from latents ``z``."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def encode_and_reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents of ``x`` and its reconstruction, encoding once."""
        z = self.encode(x)
        return z, self.decode(z)

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    def provenance(self) -> dict:
        """JSON-ready: format, widths, where the files came from and what the config says."""
        return {
            "format": self.format,
            "d_model": self.d_model,
            "d_sae": self.d_sae,
            **self.source.to_dict(),
            **self.info,
        }

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as float32 on the SAE's device, once its width is checked."""
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"activations of width {x.shape[-1]} given to the SAE {self.source.describe()}"
                f", which reads activations of width d_model={self.d_model}"
            )
        return x.to(device=self.device, dtype=torch.float32)


class DictionarySAE(PretrainedSAE):
    """A linear encoder and decoder with one of the activations ``Encoding`` names:
    ``pre = (x' - b_dec if subtract_b_dec) @ W_enc + b_enc`` with ``x'`` the row-normalised
    input, latents ``activation(pre)``, reconstruction ``z @ W_dec + b_dec`` un-normalised.

    Weights are float32 buffers ``W_enc (d_model, d_sae)``, ``W_dec (d_sae, d_model)``,
    ``b_enc``, ``b_dec`` and, for JumpReLU, ``threshold``.
    """

    def __init__(self, fmt, source, tensors: dict[str, torch.Tensor], encoding, info, device):
        d_model, d_sae = tensors["W_enc"].shape
        super().__init__(fmt, source, int(d_model), int(d_sae), info)
        self.encoding = encoding
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor.to(device=device, dtype=torch.float32))
        if encoding.rescale_by_decoder_norm:
            self.register_buffer("decoder_norms", self.W_dec.norm(dim=-1))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        normalised, _ = normalise_rows(self._inputs(x), self.encoding.row_norm)
        return self._latents(normalised)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.encoding.row_norm != "none":
            raise ValueError(
                f"the SAE {self.source.describe()} normalises each input row "
                f"({self.encoding.row_norm}), so latents alone do not give back the "
                "activations; use reconstruct(x)"
            )
        return self._decode_normalised(z.to(device=self.device, dtype=torch.float32))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_and_reconstruct(x)[1]

    @torch.no_grad()
    def encode_and_reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalised, undo = normalise_rows(self._inputs(x), self.encoding.row_norm)
        z = self._latents(normalised)
        return z, undo(self._decode_normalised(z))

    def _latents(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding.subtract_b_dec:
            x = x - self.b_dec
        pre = x @ self.W_enc + self.b_enc
        if self.encoding.rescale_by_decoder_norm:
            pre = pre * self.decoder_norms
        return activate(pre, self.encoding, getattr(self, "threshold", None))

    def _decode_normalised(self, z: torch.Tensor) -> torch.Tensor:
        if self.encoding.rescale_by_decoder_norm:
            z = z / self.decoder_norms
        return z @ self.W_dec + self.b_dec


class PrunescopeSAE(PretrainedSAE):
    """prunescope's own ``TopKSAE`` (its mean/std normalisation included) behind the same
    interface; ``encode`` is ``survival.as_latent_encoder``'s dense top-k code."""

    def __init__(self, sae: TopKSAE, source: SAESource, info: dict):
        super().__init__("prunescope", source, sae.d_model, sae.d_sae, info)
        self.sae = sae
        self.latents = as_latent_encoder(sae)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.latents.encode(self._inputs(x))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(device=self.device, dtype=torch.float32)
        return self.sae.denormalise(z @ self.sae.W_dec + self.sae.b_dec)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae(self._inputs(x)).x_rec


def activate(pre: torch.Tensor, encoding: Encoding, threshold: torch.Tensor | None):
    """Latents from pre-activations, as ``encoding.activation`` says."""
    if encoding.activation == "relu":
        return torch.relu(pre)
    if encoding.activation == "jumprelu":
        return jump_relu(pre, threshold)
    if encoding.activation == "topk":
        return top_k_relu(pre, encoding.k)
    if encoding.activation == "groupmax":
        return group_max_relu(pre, encoding.k)
    raise ValueError(f"unknown SAE activation {encoding.activation!r}")


def jump_relu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``pre`` where it exceeds the threshold strictly, else 0.

    Written ``relu(pre) * (pre > threshold)`` as SAELens and Google's Gemma Scope reference
    do: for the non-negative thresholds JumpReLU training produces it equals
    ``pre * (pre > threshold)``, and it keeps latents non-negative should one be negative.
    """
    return torch.relu(pre) * (pre > threshold)


def top_k_relu(pre: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest pre-activations of each row, ReLU-ed, and 0 elsewhere.

    SAELens takes the top k of ``pre`` then applies ReLU; sparsify applies ReLU then takes
    the top k. Both keep every positive entry among the k largest and zero the rest, so
    the dense latents are the same.
    """
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, indices, torch.relu(values))


def group_max_relu(pre: torch.Tensor, k: int) -> torch.Tensor:
    """sparsify's "groupmax": the latents split into k equal contiguous groups, and the
    largest ReLU-ed pre-activation of each group kept."""
    values, within = torch.relu(pre).unflatten(-1, (k, -1)).max(dim=-1)
    group_size = pre.shape[-1] // k
    offsets = torch.arange(k, device=pre.device) * group_size
    return torch.zeros_like(pre).scatter_(-1, within + offsets, values)


def normalise_rows(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, Callable]:
    """SAELens' run-time input normalisation of each row and the function that undoes it
    on a reconstruction (``constant_norm_rescale``: norm sqrt(d_in); ``layer_norm``:
    mean 0, unbiased std 1 with eps 1e-5 added to the std, undone without the eps)."""
    if mode == "none":
        return x, lambda y: y
    if mode == "constant_norm_rescale":
        coefficient = math.sqrt(x.shape[-1]) / x.norm(dim=-1, keepdim=True)
        return x * coefficient, lambda y: y / coefficient
    if mode == "layer_norm":
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        std = centred.std(dim=-1, keepdim=True)
        return centred / (std + 1e-5), lambda y: y * std + mean
    raise ValueError(f"unknown row normalisation {mode!r}")


# ----------------------------------------------------------------- reading each layout


@dataclass(frozen=True)
class TensorNames:
    """Where a layout keeps each weight; ``encoder_transposed``: stored (d_sae, d_model)."""

    encoder: str
    decoder: str
    b_enc: str
    b_dec: str
    threshold: str | None = None
    encoder_transposed: bool = False


GEMMA_SCOPE_TENSORS = TensorNames("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
GEMMA_SCOPE_2_TENSORS = TensorNames("w_enc", "w_dec", "b_enc", "b_dec", "threshold")
SAELENS_TENSORS = TensorNames("W_enc", "W_dec", "b_enc", "b_dec")
SAELENS_JUMPRELU_TENSORS = GEMMA_SCOPE_TENSORS
SPARSIFY_TENSORS = TensorNames(
    "encoder.weight", "W_dec", "encoder.bias", "b_dec", encoder_transposed=True
)


def read_weights(weights: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an .npz or .safetensors file, on the CPU; NaN/Inf is refused."""
    if weights.suffix != ".npz":
        tensors, _ = read_safetensors(weights, WEIGHTS)
        return tensors
    arrays = read_npz(weights, WEIGHTS)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            problem = f"has {nan_or_inf(tensor)} in tensor {name!r}, so it is corrupt"
            raise damaged(WEIGHTS, weights, problem)
    return tensors


def dictionary_tensors(
    tensors: dict[str, torch.Tensor], names: TensorNames, weights: Path, spare=()
) -> dict[str, torch.Tensor]:
    """The weights under prunescope's names (``W_enc`` as (d_model, d_sae)), after checking
    that each is there with the shape the encoder implies and that nothing else is (bar the
    ``spare`` tensors the caller deals with): a tensor no layout uses may change what the
    SAE computes, and this loader would silently leave it out."""
    wanted = {
        "W_enc": names.encoder,
        "W_dec": names.decoder,
        "b_enc": names.b_enc,
        "b_dec": names.b_dec,
    }
    if names.threshold is not None:
        wanted["threshold"] = names.threshold
    missing = [stored for stored in wanted.values() if stored not in tensors]
    if missing:
        raise UserInputError(
            f"{WEIGHTS} {weights} lacks the tensors {listed(missing)} (it holds "
            f"{listed(sorted(tensors), shown=8)}), so it is no complete SAE"
        )
    extra = sorted(set(tensors) - set(wanted.values()) - set(spare))
    if extra:
        raise UserInputError(
            f"{WEIGHTS} {weights} holds the tensors {listed(extra)}, which the layout it "
            f"follows has no use for (it needs {', '.join(wanted.values())})"
        )
    encoder = tensors[names.encoder]
    if encoder.ndim != 2:
        raise UserInputError(
            f"{WEIGHTS} {weights} has {names.encoder} of shape {tuple(encoder.shape)}, not a matrix"
        )
    picked = {name: tensors[stored] for name, stored in wanted.items()}
    if names.encoder_transposed:
        picked["W_enc"] = encoder.T
    check_dictionary_shapes(picked, wanted, tuple(encoder.shape), weights)
    return picked


def check_dictionary_shapes(
    tensors: dict[str, torch.Tensor], stored: dict[str, str], encoder_shape, weights: Path
) -> None:
    """Refuse a decoder, bias or threshold whose shape the encoder does not imply;
    ``stored`` maps prunescope's names to the file's and ``encoder_shape`` is the encoder's
    shape in the file, both for the message."""
    d_model, d_sae = tensors["W_enc"].shape
    expected = {
        "W_dec": (d_sae, d_model),
        "b_enc": (d_sae,),
        "b_dec": (d_model,),
        "threshold": (d_sae,),
    }
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise UserInputError(
                f"{WEIGHTS} {weights} has {stored[name]} of shape {tuple(tensors[name].shape)}"
                f", but its encoder {stored['W_enc']} of shape {encoder_shape} makes "
                f"d_model={d_model} and d_sae={d_sae}, so it should be {shape}"
            )


def _gemma_scope(files: SAEFiles, names: TensorNames) -> tuple[dict, Encoding, dict]:
    """Gemma Scope (1 and 2): JumpReLU on the raw activations, b_dec only in the decoder."""
    tensors = dictionary_tensors(read_weights(files.weights), names, files.weights)
    d_sae = tensors["W_enc"].shape[1]
    info = {}
    if "config.json" in files.configs:
        info = gemma_scope_config(
            files.configs["config.json"], files.config_path("config.json"), d_sae
        )
    return tensors, Encoding("jumprelu"), info


def gemma_scope_config(config: dict, path: Path, d_sae: int) -> dict:
    """What a Gemma Scope 2 ``config.json`` says (hooks, model, width, l0), once checked to
    describe a plain JumpReLU SAE of this width: transcoders, affine skip connections and
    other architectures are refused, naming the key."""
    architecture = config.get("architecture", "jump_relu")
    if str(architecture).lower().replace("_", "") != "jumprelu":
        raise UserInputError(
            f"{CONFIG} {path} says architecture={architecture!r}; Gemma Scope SAEs are read "
            "as JumpReLU (jump_relu) only"
        )
    if config.get("width", d_sae) != d_sae:
        raise UserInputError(
            f"{CONFIG} {path} says width={config['width']!r} but the weights beside it have "
            f"d_sae={d_sae}, so the two do not belong together"
        )
    kind = config.get("type", "sae")
    if kind != "sae":
        raise UserInputError(
            f"{CONFIG} {path} says type={kind!r}: it does not reconstruct the activations it "
            "reads, and survival needs an SAE (type 'sae')"
        )
    hook_in, hook_out = config.get("hf_hook_point_in"), config.get("hf_hook_point_out")
    if None not in (hook_in, hook_out) and hook_in != hook_out:
        raise UserInputError(
            f"{CONFIG} {path} says it reads {hook_in} but writes {hook_out}, so it does not "
            "reconstruct the activations it reads, and survival needs an SAE"
        )
    if config.get("affine_connection"):
        raise UserInputError(
            f"{CONFIG} {path} says affine_connection=true: its output adds an affine map of "
            "its input, so it is no plain SAE"
        )
    keep = ("model_name", "hf_hook_point_in", "width", "l0", "type")
    return {name: config[name] for name in keep if name in config}


SAELENS_ARCHITECTURES = ("standard", "topk", "jumprelu")
UNFOLDED_SCALING = (
    "its inputs were multiplied by a dataset-wide factor that neither cfg.json nor the "
    "weights carry (SAELens folds it into the weights when training ends and writes "
    "'none'), so its latents cannot be reproduced; fold the factor in "
    "(SAE.fold_activation_norm_scaling_factor) and save it again"
)


def _saelens(files: SAEFiles) -> tuple[dict, Encoding, dict]:
    """A SAELens folder: standard (ReLU), topk or jumprelu, as SAELens 6 ``save_model``
    writes it (training settings and ``metadata`` beside the architecture keys), or as
    SAELens 5 wrote it (all keys at the top, ``activation_fn`` topk for TopK SAEs)."""
    cfg, cfg_path = files.configs["cfg.json"], files.config_path("cfg.json")
    architecture = saelens_architecture(cfg, cfg_path)
    names = SAELENS_JUMPRELU_TENSORS if architecture == "jumprelu" else SAELENS_TENSORS
    raw = read_weights(files.weights)
    if architecture != "jumprelu" and "threshold" in raw:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says architecture={architecture!r} but {files.weights} "
            "holds a JumpReLU threshold, so the two contradict each other"
        )
    _refuse_latent_scaling(raw, cfg, files.weights)
    tensors = dictionary_tensors(raw, names, files.weights, spare=("scaling_factor",))
    d_model, d_sae = tensors["W_enc"].shape
    _check_declared(cfg, cfg_path, {"d_in": d_model, "d_sae": d_sae}, files.weights)
    encoding = Encoding(
        activation={"standard": "relu"}.get(architecture, architecture),
        k=saelens_k(cfg, cfg_path, d_sae) if architecture == "topk" else None,
        subtract_b_dec=_flag(cfg, "apply_b_dec_to_input", True, cfg_path),
        row_norm=saelens_row_norm(cfg, cfg_path),
        rescale_by_decoder_norm=_flag(cfg, "rescale_acts_by_decoder_norm", False, cfg_path),
    )
    return tensors, encoding, saelens_info(cfg, architecture)


def saelens_architecture(cfg: dict, cfg_path: Path) -> str:
    """standard, topk or jumprelu; SAELens 5 wrote TopK SAEs as architecture "standard"
    (or none) with activation_fn "topk", and SAELens 6 reads them as topk too."""
    architecture = cfg.get("architecture") or "standard"
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    if architecture == "standard" and activation == "topk":
        return "topk"
    if architecture not in SAELENS_ARCHITECTURES:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says architecture={architecture!r}; SAELens SAEs are read "
            f"as {', '.join(SAELENS_ARCHITECTURES)} only"
        )
    if architecture == "standard" and activation not in (None, "relu"):
        raise UserInputError(
            f"{CONFIG} {cfg_path} says activation_fn={activation!r}; a standard SAELens SAE "
            "is read with ReLU only"
        )
    return architecture


def saelens_k(cfg: dict, cfg_path: Path, d_sae: int) -> int:
    k = cfg.get("k")
    if k is None:
        k = (cfg.get("activation_fn_kwargs") or {}).get("k")
    return _latent_count(k, "k", cfg_path, d_sae)


def saelens_row_norm(cfg: dict, cfg_path: Path) -> str:
    """The per-row normalisation to apply, or a refusal of a setting that cannot be
    reproduced; SAELens 5 wrote a bool (true meaning expected_average_only_in)."""
    setting = cfg.get("normalize_activations")
    if setting in (None, False, "none"):
        return "none"
    if setting is True or setting == "expected_average_only_in":
        raise UserInputError(
            f"{CONFIG} {cfg_path} says normalize_activations='expected_average_only_in': "
            + UNFOLDED_SCALING
        )
    if setting in ("constant_norm_rescale", "layer_norm"):
        return setting
    raise UserInputError(
        f"{CONFIG} {cfg_path} says normalize_activations={setting!r}, which SAELens does not "
        "define (none, expected_average_only_in, constant_norm_rescale, layer_norm)"
    )


def _refuse_latent_scaling(raw: dict, cfg: dict, weights: Path) -> None:
    """SAELens 5's finetuning scaling factor multiplies the latents; a stored factor of all
    ones (SAELens wrote one for a while) changes nothing and is dropped."""
    factor = raw.get("scaling_factor")
    if cfg.get("finetuning_scaling_factor") or (
        factor is not None and not bool((factor == 1).all())
    ):
        raise UserInputError(
            f"{WEIGHTS} {weights} carries a finetuning scaling_factor (SAELens 5) that "
            "multiplies its latents; such SAEs are not read here"
        )


def saelens_info(cfg: dict, architecture: str) -> dict:
    """Hook, model and version, from SAELens 6's ``metadata`` or SAELens 5's top level."""
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    info = {"architecture": architecture}
    for name in ("model_name", "hook_name", "sae_lens_version"):
        value = metadata.get(name, cfg.get(name))
        if value is not None:
            info[name] = value
    return info


def _sparsify(files: SAEFiles) -> tuple[dict, Encoding, dict]:
    """An EleutherAI sparsify SAE: ``TopK(ReLU(encoder(x - b_dec)))`` (or one per group,
    "groupmax"); transcoders, skip connections and signed latents are refused."""
    cfg, cfg_path = files.configs["cfg.json"], files.config_path("cfg.json")
    for name, meaning in (
        ("transcode", "a transcoder, whose encoder does not read the activations it rebuilds"),
        ("skip_connection", "its reconstruction adds a skip connection (W_skip)"),
        ("signed", "its latents may be negative"),
    ):
        if _flag(cfg, name, False, cfg_path):
            raise UserInputError(
                f"{CONFIG} {cfg_path} says {name}=true: {meaning}; survival needs a plain SAE"
            )
    tensors = dictionary_tensors(read_weights(files.weights), SPARSIFY_TENSORS, files.weights)
    d_model, d_sae = tensors["W_enc"].shape
    declared = {"d_in": d_model}
    if cfg.get("num_latents"):
        declared["num_latents"] = d_sae
    elif "expansion_factor" in cfg and "d_in" in cfg:
        declared["expansion_factor"] = d_sae / d_model
    _check_declared(cfg, cfg_path, declared, files.weights)
    activation = cfg.get("activation", "topk")
    if activation not in ("topk", "groupmax"):
        raise UserInputError(
            f"{CONFIG} {cfg_path} says activation={activation!r}; sparsify SAEs are read with "
            "topk or groupmax only"
        )
    k = _latent_count(cfg.get("k"), "k", cfg_path, d_sae)
    if activation == "groupmax" and d_sae % k:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says activation='groupmax' with k={k}, which does not "
            f"divide the {d_sae} latents into equal groups"
        )
    return tensors, Encoding(activation, k=k, subtract_b_dec=True), {"activation": activation}


def _check_declared(cfg: dict, cfg_path: Path, found: dict, weights: Path) -> None:
    """Refuse a config whose sizes (when it states them) contradict the weights."""
    for name, value in found.items():
        if name in cfg and cfg[name] != value:
            raise UserInputError(
                f"{CONFIG} {cfg_path} says {name}={cfg[name]!r} but {weights} implies "
                f"{name}={value:g}, so the two do not belong together"
            )


def _flag(cfg: dict, name: str, default: bool, cfg_path: Path) -> bool:
    value = cfg.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UserInputError(f"{CONFIG} {cfg_path} says {name}={value!r}, not true or false")
    return value


def _latent_count(value, name: str, cfg_path: Path, d_sae: int) -> int:
    """A whole number of latents between 1 and d_sae (SAELens may write k as 32.0)."""
    whole = isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)
    if value is None or not whole or not 1 <= int(value) <= d_sae:
        raise UserInputError(
            f"{CONFIG} {cfg_path} says {name}={value!r}; it must be a whole number of latents "
            f"between 1 and d_sae={d_sae}"
        )
    return int(value)


# ----------------------------------------------------------------- loading


READERS = {
    "gemma_scope": lambda files: _gemma_scope(files, GEMMA_SCOPE_TENSORS),
    "gemma_scope_2": lambda files: _gemma_scope(files, GEMMA_SCOPE_2_TENSORS),
    "saelens": _saelens,
    "sparsify": _sparsify,
}


def load_pretrained_sae(
    spec, device: torch.device | str = "cpu", d_model: int | None = None, key: str | None = None
) -> PretrainedSAE:
    """The SAE that ``spec`` names (see ``resolve_sae_source``), on ``device``, computing in
    float32 whatever dtype its weights are stored in.

    With ``d_model``, an SAE that reads activations of another width is refused, naming
    both. ``key`` is the config key that named the SAE: every error then starts with it.
    """
    source = resolve_sae_source(spec, key)
    device = pick_device(device) if isinstance(device, str) else device
    with _led_by(key), _files_of(source):
        files = find_sae_files(source.local)
        fmt = _classify(files)
        if fmt is None:
            raise _unknown_layout(files)
        if fmt == "prunescope":
            sae = _prunescope(files, source, device)
        else:
            tensors, encoding, info = READERS[fmt](files)
            sae = DictionarySAE(fmt, source, tensors, encoding, info, device)
        if d_model is not None and sae.d_model != d_model:
            raise UserInputError(
                f"SAE {source.describe()} ({fmt}) reads activations of width "
                f"d_model={sae.d_model}, but the activations it is to encode have width "
                f"{d_model}; it was trained on another model or layer"
            )
        return sae.eval()


def _prunescope(files: SAEFiles, source: SAESource, device: torch.device) -> PrunescopeSAE:
    sae = load_sae(files.weights.parent, device)
    provenance = files.configs["cfg.json"].get("provenance")
    return PrunescopeSAE(sae, source, {"k": sae.k, "provenance": provenance or {}})


def load_dictionary(path, device: torch.device | str = "cpu") -> PretrainedSAE:
    """The SAE in a folder (or the folder of a file ``path`` names): a prunescope SAE trained
    here, or the copy of a pretrained one that ``import_pretrained_sae`` wrote."""
    path = Path(path)
    return load_pretrained_sae(path if path.is_dir() else path.parent, device)


# ----------------------------------------------------------------- into the workflow

SOURCE_RECORD = "source.json"
"""Beside an imported SAE's files: its label, format, widths and where it came from."""


def import_pretrained_sae(
    spec, out_dir, *, label: str, d_model: int | None = None, key: str | None = None
) -> dict:
    """Load the SAE ``spec`` names (every check of ``load_pretrained_sae`` passed, its width
    against ``d_model``), then copy its weights and configs into ``out_dir`` with
    ``source.json``, the record returned: what the analyses read, the same bytes whatever
    becomes of the hub cache or the original folder later.

    ``out_dir`` appears whole or not at all.
    """
    sae = load_pretrained_sae(spec, "cpu", d_model=d_model, key=key)
    files = find_sae_files(sae.source.local)
    record = {
        "label": label,
        **sae.provenance(),
        "weights_file": files.weights.name,
        "weights_sha256": _sha256(files.weights),
    }
    with atomic_path(out_dir) as staging:
        staging.mkdir()
        shutil.copyfile(files.weights, staging / files.weights.name)
        for name in files.configs:
            shutil.copyfile(files.config_path(name), staging / name)
        # last: a folder holding it is a finished copy
        write_json(staging / SOURCE_RECORD, record)
    return record


def load_imported_sae(
    folder, device: torch.device | str = "cpu", d_model: int | None = None
) -> tuple[PretrainedSAE, dict]:
    """The SAE ``import_pretrained_sae`` copied into ``folder``, and its record. With
    ``d_model``, activations of another width are refused naming the SAE as configured."""
    folder = Path(folder)
    record = read_json(
        require_file(folder / SOURCE_RECORD, "pretrained SAE record"), "pretrained SAE record"
    )
    sae = load_pretrained_sae(folder, device)
    if d_model is not None and sae.d_model != d_model:
        raise UserInputError(
            f"pretrained SAE {record.get('label')!r} ({sae.format}) reads activations of width "
            f"d_model={sae.d_model}, but these activations have width {d_model}; it was "
            "trained on another model or layer"
        )
    return sae, record


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _led_by(key: str | None) -> Iterator[None]:
    """Errors about the SAE, led by the config key that named it when there is one."""
    try:
        yield
    except (UserInputError, FileNotFoundError) as err:
        if key is None or str(err).startswith(f"{key}: "):
            raise
        raise type(err)(keyed(key, str(err))) from err


@contextlib.contextmanager
def _files_of(source: SAESource) -> Iterator[None]:
    """A damaged file is the user's own download, not a file a rule will rewrite: the
    remedy is a fresh copy (from the hub, forced), not "delete it and rerun"."""
    try:
        yield
    except CorruptFileError as err:
        text = str(err).removesuffix(_REBUILD)
        raise CorruptFileError(f"{text}; {_fresh_copy(source)}") from err


def _fresh_copy(source: SAESource) -> str:
    if source.repo is None:
        return "replace it with a complete copy of the SAE"
    pattern = _join(sae_folder_in_repo(source.path or ""), "*")
    revision = f" --revision {source.revision}" if source.revision else ""
    return (
        f"download it again with `hf download {source.repo} --include '{pattern}'{revision} "
        "--force-download`"
    )


__all__ = [
    "FORMATS",
    "DictionarySAE",
    "Encoding",
    "PretrainedSAE",
    "PrunescopeSAE",
    "SAEFiles",
    "SAESource",
    "activate",
    "detect_format",
    "find_sae_files",
    "group_max_relu",
    "import_pretrained_sae",
    "jump_relu",
    "load_dictionary",
    "load_imported_sae",
    "load_pretrained_sae",
    "normalise_rows",
    "resolve_sae_source",
    "top_k_relu",
]
