"""Loading causal LMs and finding the parts every stage touches.

One code path for every model: a local folder (trained here or saved by a
test) or a hub name, both through ``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from prunescope.architectures import (
    decoder_blocks,
    family_for,
    language_model_config,
    prunable_matrices,
    site_norm,
)
from prunescope.artifacts import CorruptFileError, damaged, read_safetensors_header
from prunescope.errors import UserInputError, keyed, listed
from prunescope.hub import first_line, only_a_path
from prunescope.io import read_json

MODEL_FOLDER = "model folder"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What artifacts.damaged tells the user to do: right for a folder the workflow wrote, wrong
# for the user's own model folder (named by a config key), which is never ours to delete.
_REBUILD = "; delete it and rerun"
_REPLACE = "; replace it with a complete copy of the model"
# Files a tokenizer can be built from; tokenizer.json is what save_pretrained writes.
_VOCABULARY_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def load_causal_lm(
    path_or_name: str,
    dtype: str = "float32",
    device: str = "auto",
    *,
    revision: str | None = None,
    key: str | None = None,
):
    """Load ``(model, tokenizer)`` in eval mode from a model folder or a hub id.

    ``key`` is the config key that named the model (``models.<name>.name``) when it is the
    user's own: errors then start with it and never advise deleting the folder. Refuses, in
    one sentence naming the folder or hub id: a folder that does not exist or holds no model,
    a truncated or corrupt file, weights missing, unexpected or of the wrong shape (which
    ``from_pretrained`` would fill at random or drop), a tokenizer that is missing or cannot
    be built, and a hub model that cannot be downloaded. Refuses float16 for Gemma models,
    whose deep residual streams overflow float16 and turn into NaN. ``revision`` applies to
    hub ids only.
    """
    if dtype not in DTYPES:
        raise UserInputError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    folder = model_folder(path_or_name, key)
    if folder is None:
        model, tokenizer = _load_from_hub(path_or_name, dtype, revision, key)
    else:
        model, tokenizer = _load_from_folder(folder, dtype, key)
    model.to(pick_device(device)).eval()
    return model, tokenizer


def model_folder(name: str, key: str | None = None) -> Path | None:
    """The folder ``name`` names, or None when it is a hub id.

    An existing folder always wins, so ``models/my-llama`` written without ``./`` is that
    folder and not the hub repository of the same name; a name no hub id can have (``./m``,
    ``/m``, ``~/m``, ``a/b/c``, ``results/...``) must exist.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise UserInputError(keyed(key, f"{MODEL_FOLDER} {path} is a file, not a folder"))
    if only_a_path(name):
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise FileNotFoundError(keyed(key, f"{MODEL_FOLDER} {path} does not exist{where}"))
    return None


def _load_from_folder(folder: Path, dtype: str, key: str | None):
    from transformers import AutoConfig, AutoModelForCausalLM

    check_model_folder(folder, key)
    _require_known_architecture(folder, key)
    with _unreadable(folder, key, "has a config.json transformers cannot read"):
        config = AutoConfig.from_pretrained(folder)
    check_family(config, key)
    check_dtype_for_model(config.model_type, dtype)
    with _unreadable(folder, key, "cannot be loaded as a causal language model"):
        model, loading = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=DTYPES[dtype],
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported below, naming the folder
        )
    problem = weights_problem(model, loading)
    if problem:
        raise _folder_damage(folder, key, problem)
    return model, _load_tokenizer(folder, key)


def _require_known_architecture(folder: Path, key: str | None) -> None:
    """A model_type this transformers does not know: a newer model, not a damaged folder."""
    import transformers

    model_type = read_json(folder / "config.json", "model file")["model_type"]
    if model_type not in transformers.CONFIG_MAPPING:
        raise UserInputError(
            keyed(
                key,
                f"{MODEL_FOLDER} {folder} has model_type {model_type!r}, which transformers "
                f"{transformers.__version__} does not know; upgrade transformers",
            )
        )


def load_tokenizer(folder: str | Path, key: str | None = None):
    """The tokenizer of a model folder, refused as ``load_causal_lm`` refuses it."""
    return _load_tokenizer(Path(folder), key)


def _load_tokenizer(folder: Path, key: str | None):
    from transformers import AutoTokenizer

    # Without tokenizer_config.json transformers still builds a tokenizer, silently without
    # its BOS and padding tokens, so a missing one is refused rather than guessed.
    if not (folder / "tokenizer_config.json").is_file():
        problem = "has no tokenizer_config.json, so its tokenizer is incomplete"
        raise _folder_damage(folder, key, problem)
    if not any((folder / name).is_file() for name in _VOCABULARY_FILES):
        raise _folder_damage(folder, key, "has no tokenizer.json, so its tokenizer is incomplete")
    with _unreadable(folder, key, "has a tokenizer that cannot be loaded"):
        return AutoTokenizer.from_pretrained(folder)


def _load_from_hub(name: str, dtype: str, revision: str | None, key: str | None):
    from transformers import AutoConfig, AutoModelForCausalLM

    what = f"hub model {name}" + (f" at revision {revision}" if revision else "")
    with _from_hub(name, what, revision, key):
        config = AutoConfig.from_pretrained(name, revision=revision)
    check_family(config, key)  # before the weights are downloaded
    check_dtype_for_model(config.model_type, dtype)
    with _from_hub(name, what, revision, key):
        model, loading = AutoModelForCausalLM.from_pretrained(
            name,
            revision=revision,
            dtype=DTYPES[dtype],
            output_loading_info=True,
            ignore_mismatched_sizes=True,
        )
    problem = weights_problem(model, loading)
    if not problem:
        with _from_hub(name, what, revision, key):
            tokenizer, problem = _hub_tokenizer(name, revision)
    if problem:
        fix = f"download it again with `hf download {name} --force-download`"
        raise UserInputError(keyed(key, f"{what} {problem}; {fix}, or check {_name_key(key)}"))
    return model, tokenizer


def _hub_tokenizer(name: str, revision: str | None):
    """``(tokenizer, None)``, or ``(None, what is wrong)`` with a hub model's tokenizer files:
    the counterpart of the checks of a folder, made on the files the hub's cache holds."""
    from huggingface_hub import try_to_load_from_cache
    from transformers import AutoTokenizer

    try:
        tokenizer, error = AutoTokenizer.from_pretrained(name, revision=revision), None
    except ValueError as err:  # files it cannot build from; failed downloads are OSErrors
        tokenizer, error = None, err

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(name, filename, revision=revision), str)

    if not cached("tokenizer_config.json"):
        return None, "has no tokenizer_config.json, so its tokenizer is incomplete"
    if not any(cached(filename) for filename in _VOCABULARY_FILES):
        return None, "has no tokenizer.json, so its tokenizer is incomplete"
    if error is not None:
        return None, f"has a tokenizer that cannot be loaded ({first_line(error)})"
    return tokenizer, None


@contextlib.contextmanager
def _from_hub(name: str, what: str, revision: str | None, key: str | None) -> Iterator[None]:
    """A failed download, or files transformers cannot use, as one sentence naming the id."""
    from huggingface_hub.errors import StrictDataclassError

    from prunescope.hub import hub_errors, hub_failure, no_folder_either

    try:
        yield
    except UserInputError:
        raise
    except hub_errors() as err:
        failure = hub_failure(err, repo=name, kind="model", key=_name_key(key), revision=revision)
        hint = no_folder_either(name) if failure.unfound else ""
        sentence = f"{what} could not be downloaded: {failure.reason}{hint}; {failure.fix}"
        raise UserInputError(keyed(key, sentence)) from err
    except (ValueError, KeyError, StrictDataclassError) as err:
        problem = f"cannot be loaded ({first_line(err)})"
        raise UserInputError(keyed(key, f"{what} {problem}; check {_name_key(key)}")) from err


def residual_width(folder: str | Path) -> int:
    """The width of a saved model's residual stream (``hidden_size`` of its config.json, or
    of the language model's part of a multimodal one; GPT-2 calls it ``n_embd``)."""
    config_path = Path(folder) / "config.json"
    config = read_json(config_path, "model file")
    width = language_model_config(config).get("hidden_size") if isinstance(config, dict) else None
    if not isinstance(width, int) or width < 1:
        raise damaged(MODEL_FOLDER, folder, f"has a config.json without a hidden_size ({width!r})")
    return width


def _name_key(key: str | None) -> str:
    return key or "the model name"


def check_model_folder(folder: str | Path, key: str | None = None) -> None:
    """Check the files of a saved model folder before loading: it has a config.json naming
    its architecture, every JSON file parses and every safetensors header is whole and
    covers its file (which finds a truncated file).

    Reads headers only, so it costs little next to loading; garbage inside the weights
    themselves is not found here.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise _not_a_model(folder, key, "has no config.json")
    with _user_folder(key):
        config = read_json(config_path, "model file")
        if not isinstance(config, dict) or "model_type" not in config:
            raise _not_a_model(folder, key, "has a config.json without model_type")
        for path in sorted(folder.glob("*.json")):
            read_json(path, "model file")
        weights = sorted(folder.glob("*.safetensors"))
        if not weights and not (folder / "pytorch_model.bin").is_file():
            problem = f"{MODEL_FOLDER} {folder} has no weights (model.safetensors)"
            raise FileNotFoundError(keyed(key, problem + (_REPLACE if key else _REBUILD)))
        for path in weights:
            read_safetensors_header(path, "model weights file")
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = set(read_json(index, "model file").get("weight_map", {}).values())
            missing = sorted(name for name in shards if not (folder / name).is_file())
            if missing:
                raise damaged(MODEL_FOLDER, folder, f"lacks the weight shards {missing}")


def weights_problem(model: nn.Module, loading: dict) -> str | None:
    """What is wrong with the weights ``from_pretrained`` found on disk, or None.

    transformers fills a missing weight (and, with ``ignore_mismatched_sizes``, a misshapen
    one) with random values and drops a tensor it has no place for, warning at most. A tied
    ``lm_head`` is not reported missing. Rotary tables (``inv_freq``) and other buffers are
    computed from config.json, and some checkpoints carry them: no alarm for those.
    """
    missing = sorted(loading.get("missing_keys", ()))
    if missing:
        return f"lacks the weights {listed(missing)}, so it is incomplete"
    buffers = {name for name, _ in model.named_buffers()}
    unexpected = sorted(
        name
        for name in loading.get("unexpected_keys", ())
        if name not in buffers and not name.endswith("inv_freq")
    )
    if unexpected:
        return f"has the tensors {listed(unexpected)} that its config.json has no place for"
    mismatched = sorted(loading.get("mismatched_keys", ()), key=lambda item: item[0])
    if mismatched:
        name, on_disk, expected = mismatched[0]
        return (
            f"has {name} of shape {tuple(on_disk)} where its config.json implies "
            f"{tuple(expected)} ({len(mismatched)} weights differ)"
        )
    errors = loading.get("error_msgs") or []
    return f"cannot be loaded ({first_line(errors[0])})" if errors else None


def _folder_damage(folder: Path, key: str | None, problem: str) -> CorruptFileError:
    if key is None:
        return damaged(MODEL_FOLDER, folder, problem)
    return CorruptFileError(f"{key}: {MODEL_FOLDER} {folder} {problem}{_REPLACE}")


def _not_a_model(folder: Path, key: str | None, problem: str) -> UserInputError:
    if key is None:
        return damaged(MODEL_FOLDER, folder, f"{problem}, so it is not a model folder")
    return UserInputError(
        f"{key}: {MODEL_FOLDER} {folder} {problem}, so it is not a model folder; point {key} "
        "at a folder written by save_pretrained, or at a hub id"
    )


@contextlib.contextmanager
def _user_folder(key: str | None) -> Iterator[None]:
    """Errors about a file in the user's own folder: led by the key, with the user's remedy."""
    try:
        yield
    except CorruptFileError as err:
        if key is None:
            raise
        text = str(err).removesuffix(_REBUILD)
        raise CorruptFileError(f"{key}: {text}{_REPLACE}") from err


@contextlib.contextmanager
def _unreadable(folder: Path, key: str | None, problem: str) -> Iterator[None]:
    """transformers' own errors about a checked folder (an unknown model_type, a config that
    is not a causal LM, a tokenizer it cannot build) as one sentence naming the folder."""
    from huggingface_hub.errors import StrictDataclassError

    try:
        yield
    except UserInputError:
        raise
    except (ValueError, OSError, KeyError, ImportError, StrictDataclassError) as err:
        raise _folder_damage(folder, key, f"{problem} ({first_line(err)})") from err


def check_family(config, key: str | None = None) -> None:
    """Refuse a model whose family ``prunescope.architectures`` does not describe, naming
    the key that chose it, its class and the supported families."""
    classes = getattr(config, "architectures", None) or []
    family_for(config.model_type, classes[0] if classes else None, key)


def check_dtype_for_model(model_type: str, dtype: str) -> None:
    if dtype == "float16" and model_type.startswith("gemma"):
        raise UserInputError(
            f"dtype float16 is refused for {model_type} models: their residual stream "
            "overflows float16 at deep layers; use bfloat16 or float32"
        )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a decoder-only HF model (``architectures``)."""
    return decoder_blocks(model)


def check_layer_index(model: nn.Module, layer: int, key: str = "layer") -> None:
    """Refuse a layer the model does not have; ``key`` names where it was asked for."""
    n = len(decoder_layers(model))
    if not 0 <= layer < n:
        raise UserInputError(
            f"{key}: layer {layer} is past the model's depth: it has layers 0..{n - 1}"
        )


def prunable_linears(model: nn.Module) -> dict[str, nn.Module]:
    """Every prunable matrix inside the decoder blocks, by qualified name: the family's
    projections (``architectures.prunable_matrices``), ``nn.Linear`` or GPT-2's ``Conv1D``.

    Embeddings and ``lm_head`` sit outside the blocks and are never returned.
    """
    return prunable_matrices(model)


class _StopForward(Exception):
    """Raised by a capture hook to end the forward pass once the wanted block has run."""


class ResidualCapture:
    """The residual stream after one decoder block (``resid_post``), from the latest forward.

    ``output`` is the block's output hidden states ``[batch, positions, d_model]`` in the
    model's dtype. This is the block output before any final norm: for the last block it
    differs from HF's ``hidden_states[-1]``, which has the model's final norm applied.
    """

    def __init__(self, model: nn.Module, layer: int, stop_early: bool):
        self.model = model
        self.layer = layer
        self.stop_early = stop_early
        self.output: torch.Tensor | None = None

    def run(self, input_ids: torch.Tensor, **forward_kwargs) -> torch.Tensor:
        """Forward ``input_ids`` and return the captured block output.

        With ``stop_early`` the blocks after ``layer`` (and the LM head) never run, so
        capturing layer 2 of a 26-layer model costs three blocks, not 26.
        """
        self.output = None
        try:
            self.model(input_ids=input_ids, use_cache=False, **forward_kwargs)
        except _StopForward:
            pass
        if self.output is None:
            raise RuntimeError(f"the forward pass never reached decoder layer {self.layer}")
        return self.output

    def _hook(self, module: nn.Module, args, output) -> None:
        self._keep(output[0] if isinstance(output, tuple) else output)

    def _norm_input_hook(self, module: nn.Module, args) -> None:
        self._keep(args[0])

    def _keep(self, hidden: torch.Tensor) -> None:
        self.output = hidden.detach()
        if self.stop_early:
            raise _StopForward


RESID_POST = "resid_post"
"""The stream a block writes; the other sites (``architectures.SITES``) are streams it reads."""


@contextlib.contextmanager
def residual_hook(
    model: nn.Module, layer: int, *, stop_early: bool = False, site: str = RESID_POST
) -> Iterator[ResidualCapture]:
    """Record the output of ``decoder_layers(model)[layer]`` on every forward, or with
    ``site`` ``attn_in`` / ``mlp_in`` the stream entering that block's attention / MLP norm.

    Use ``capture.run(ids)`` to forward and get the activation; with ``stop_early`` a
    direct ``model(...)`` call would be cut short by a private exception, so always go
    through ``run``. The hook is removed on exit, also after an error.
    """
    check_layer_index(model, layer)
    capture = ResidualCapture(model, layer, stop_early)
    if site == RESID_POST:
        handle = decoder_layers(model)[layer].register_forward_hook(capture._hook)
    else:
        norm = site_norm(model, layer, site)
        handle = norm.register_forward_pre_hook(capture._norm_input_hook)
    try:
        yield capture
    finally:
        handle.remove()
