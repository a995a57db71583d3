"""Bad input a user can hand the workflow, each refused in one sentence that names it.

Model folders (the user's own, a frozen hub copy, a pruned checkpoint) with missing,
unexpected or misshapen weights, damaged files or tokenizers; names that are paths but
lead nowhere; hub models and datasets that cannot be downloaded (tested offline, with
HF_HUB_OFFLINE and a Hugging Face cache built in a temporary folder); damaged corpus files
and corpus sources that would give no text. Every refusal is a UserInputError (or a
FileNotFoundError), which ``rule_logging`` turns into that one sentence and exit status 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from unittest.mock import Mock

import pytest
import torch
from huggingface_hub import errors as hub_errors
from safetensors.torch import load_file, save_file
from test_models import DEPTH, VOCAB, tiny_tokenizer
from tiny_lms import ARCHITECTURES, tiny_causal_lm

from prunescope.checkpoints import save_pretrained_copy
from prunescope.corpus import (
    Document,
    documents_from_config,
    read_jsonl,
    require_documents,
    split_documents,
    textfile_documents,
    write_jsonl,
)
from prunescope.errors import UserInputError
from prunescope.hub import hub_failure
from prunescope.models import load_causal_lm
from prunescope.runlog import rule_logging

KEY = "models.mine.name"
REBUILD = "; delete it and rerun"
REPLACE = "; replace it with a complete copy of the model"
MISSING = "model.layers.1.mlp.down_proj.weight"


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """No network and an empty Hugging Face cache of our own; returns the cache folder.

    huggingface_hub and datasets read HF_HUB_OFFLINE once, on import, so their copies are
    set too, not just the environment.
    """
    import datasets
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


# ----------------------------------------------------------------- model folders


@pytest.fixture(scope="module")
def saved_files(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Each architecture saved as save_pretrained writes it (Gemma tied, Llama not), as bytes."""
    out = {}
    for arch in ARCHITECTURES:
        folder = tmp_path_factory.mktemp(arch)
        tiny_causal_lm(arch, VOCAB, num_hidden_layers=DEPTH).save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        out[arch] = {path.name: path.read_bytes() for path in folder.iterdir()}
    return out


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def edit_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def one_layer_less(folder: Path) -> dict:
    """Config changes that leave the last layer's tensors on disk with nowhere to go."""
    config = json.loads((folder / "config.json").read_text())
    changes = {"num_hidden_layers": DEPTH - 1}
    if config.get("layer_types"):  # Gemma names each layer's attention kind
        changes["layer_types"] = config["layer_types"][:-1]
    return changes


def drop_weight(folder: Path) -> None:
    edit_weights(folder, lambda t: t.pop(MISSING))


def add_tensor(folder: Path) -> None:
    edit_weights(folder, lambda t: t.update({"model.layers.0.mlp.gate.weight": torch.ones(4)}))


def cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage_over_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"\xff" * 64 + data[64:])


# (how to damage the folder, what the sentence is about, the problem it states, the remedy:
# "damage" is delete-and-rerun for a workflow folder and replace-it for the user's own).
FOLDER_DAMAGE = {
    "a weight missing": (
        drop_weight,
        "model folder",
        rf"lacks the weights {re.escape(MISSING)}, so it is incomplete",
        "damage",
    ),
    "an unexpected tensor": (
        add_tensor,
        "model folder",
        r"has the tensors model\.layers\.0\.mlp\.gate\.weight that its config\.json has no "
        "place for",
        "damage",
    ),
    "a layer more than config.json says": (
        lambda f: edit_config(f, **one_layer_less(f)),
        "model folder",
        rf"has the tensors (model\.layers\.{DEPTH - 1}\.[\w.]+, ){{2}}model\.layers\.{DEPTH - 1}"
        r"\.[\w.]+ and \d+ more that its config\.json "
        "has no place for",
        "damage",
    ),
    "weights of the wrong shape": (
        lambda f: edit_config(f, intermediate_size=48),
        "model folder",
        r"has model\.layers\.0\.mlp\.\w+\.weight of shape \(\d+, \d+\) where its config\.json "
        r"implies \(\d+, \d+\) \(\d+ weights differ\)",
        "damage",
    ),
    "weights cut in half": (
        lambda f: cut_in_half(f / "model.safetensors"),
        "model weights file",
        r"is truncated or corrupt \(Error while deserializing header: .*\)",
        "damage",
    ),
    "garbage over the weights' header": (
        lambda f: garbage_over_header(f / "model.safetensors"),
        "model weights file",
        r"is truncated or corrupt \(.*\)",
        "damage",
    ),
    "no weights at all": (
        lambda f: (f / "model.safetensors").unlink(),
        "model folder",
        r"has no weights \(model\.safetensors\)",
        "damage",
    ),
    "tokenizer.json deleted": (
        lambda f: (f / "tokenizer.json").unlink(),
        "model folder",
        r"has no tokenizer\.json, so its tokenizer is incomplete",
        "damage",
    ),
    "tokenizer.json cut in half": (
        lambda f: cut_in_half(f / "tokenizer.json"),
        "model file",
        r"is truncated or corrupt \(not valid JSON: .*\)",
        "damage",
    ),
    "tokenizer_config.json deleted": (
        lambda f: (f / "tokenizer_config.json").unlink(),
        "model folder",
        r"has no tokenizer_config\.json, so its tokenizer is incomplete",
        "damage",
    ),
    "no config.json": (
        lambda f: (f / "config.json").unlink(),
        "model folder",
        r"has no config\.json, so it is not a model folder",
        "not a model",
    ),
    "a config.json without model_type": (
        lambda f: (f / "config.json").write_text(json.dumps({"hidden_size": 32})),
        "model folder",
        r"has a config\.json without model_type, so it is not a model folder",
        "not a model",
    ),
}
FILE_OF = {"model weights file": "model.safetensors", "model file": "tokenizer.json"}


def expected(folder: Path, subject: str, problem: str, remedy: str, key: str | None) -> str:
    path = folder / FILE_OF[subject] if subject in FILE_OF else folder
    if key is None:
        tail = re.escape(REBUILD)
    elif remedy == "not a model":
        tail = re.escape(f"; point {key} at a folder written by save_pretrained, or at a hub id")
    else:
        tail = re.escape(REPLACE)
    lead = f"{re.escape(key)}: " if key else ""
    return f"^{lead}{subject} {re.escape(str(path))} {problem}{tail}$"


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("damage", list(FOLDER_DAMAGE))
def test_a_damaged_workflow_folder_is_refused_naming_it(saved_files, tmp_path, arch, damage):
    """A frozen hub copy or pruned checkpoint under results/ (loaded without a key)."""
    folder = write_folder(tmp_path / "results" / "dense", saved_files[arch])
    damage_folder, subject, problem, remedy = FOLDER_DAMAGE[damage]
    damage_folder(folder)
    with pytest.raises((UserInputError, FileNotFoundError)) as raised:
        load_causal_lm(str(folder), device="cpu")
    assert re.match(expected(folder, subject, problem, remedy, None), str(raised.value))


@pytest.mark.parametrize("damage", list(FOLDER_DAMAGE))
def test_a_damaged_folder_of_the_user_names_the_key_and_is_not_to_be_deleted(
    saved_files, tmp_path, damage
):
    """``models.<name>.name`` of a ``source: hf`` model naming a local folder."""
    folder = write_folder(tmp_path / "my-llama", saved_files["llama"])
    damage_folder, subject, problem, remedy = FOLDER_DAMAGE[damage]
    damage_folder(folder)
    with pytest.raises((UserInputError, FileNotFoundError)) as raised:
        save_pretrained_copy(str(folder), tmp_path / "dense", key=KEY)
    assert re.match(expected(folder, subject, problem, remedy, KEY), str(raised.value))
    assert not (tmp_path / "dense").exists()


def add_rotary_tables(folder: Path) -> None:
    tables = {"model.rotary_emb.inv_freq", "model.layers.0.self_attn.rotary_emb.inv_freq"}
    edit_weights(folder, lambda t: t.update({name: torch.ones(4) for name in tables}))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("tied", [True, False])
def test_tied_heads_and_saved_rotary_tables_are_no_alarm(tmp_path, arch, tied):
    original = tiny_causal_lm(arch, VOCAB, num_hidden_layers=DEPTH, tie_word_embeddings=tied)
    folder = tmp_path / "model"
    original.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    assert ("lm_head.weight" in load_file(folder / "model.safetensors")) is not tied
    add_rotary_tables(folder)
    model, _ = load_causal_lm(str(folder), device="cpu")
    ids = torch.randint(4, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(ids).logits, original(ids).logits)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_an_untied_model_without_its_head_is_refused(tmp_path, arch):
    folder = tmp_path / "model"
    tiny_causal_lm(arch, VOCAB, num_hidden_layers=DEPTH, tie_word_embeddings=False).save_pretrained(
        folder
    )
    tiny_tokenizer().save_pretrained(folder)
    edit_weights(folder, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(UserInputError, match=r"lacks the weights lm_head\.weight, so it is"):
        load_causal_lm(str(folder), device="cpu")


# ----------------------------------------------------------------- names that are paths


def test_a_folder_written_without_dot_slash_is_a_folder_not_a_hub_id(
    saved_files, tmp_path, monkeypatch, offline
):
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "models" / "my-llama", saved_files["llama"])
    save_pretrained_copy("models/my-llama", tmp_path / "dense", key=KEY)
    assert json.loads((tmp_path / "dense" / "source.json").read_text())["name"] == "models/my-llama"
    model, _ = load_causal_lm(str(tmp_path / "dense"), device="cpu")
    assert model.config.num_hidden_layers == DEPTH


NOT_THERE = "prunescope-no-such-folder"
PATH_NAMES = {
    "./ relative": (f"./models/{NOT_THERE}", rf"models/{NOT_THERE} does not exist \(relative to "),
    "../ relative": (f"../{NOT_THERE}", rf"\.\./{NOT_THERE} does not exist \(relative to "),
    "absolute": (f"/{NOT_THERE}/m", rf"/{NOT_THERE}/m does not exist$"),
    "home": (f"~/{NOT_THERE}", rf"/{NOT_THERE} does not exist$"),
    "three parts": (f"a/b/{NOT_THERE}", rf"a/b/{NOT_THERE} does not exist \(relative to "),
    "results": ("results/models/x/dense", r"results/models/x/dense does not exist \(relative to "),
}


@pytest.mark.parametrize("case", list(PATH_NAMES))
def test_a_path_that_leads_nowhere_is_named_and_never_sent_to_the_hub(
    tmp_path, monkeypatch, offline, case
):
    monkeypatch.chdir(tmp_path)
    name, message = PATH_NAMES[case]
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(KEY)}: model folder .*{message}"):
        save_pretrained_copy(name, tmp_path / "dense", key=KEY)


def test_an_architecture_transformers_does_not_know_is_not_called_damage(saved_files, tmp_path):
    folder = write_folder(tmp_path / "dense", saved_files["gemma3"])
    edit_config(folder, model_type="gemma9_text")
    message = (
        rf"^model folder {re.escape(str(folder))} has model_type 'gemma9_text', which "
        r"transformers [\w.]+ does not know; upgrade transformers$"
    )
    with pytest.raises(UserInputError, match=message):
        load_causal_lm(str(folder), device="cpu")


def test_a_file_given_as_a_model_folder_is_refused(saved_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_folder(tmp_path / "m", saved_files["llama"])
    with pytest.raises(
        UserInputError, match=rf"^{re.escape(KEY)}: model folder m/config\.json is a file"
    ):
        save_pretrained_copy("m/config.json", tmp_path / "dense", key=KEY)


# ----------------------------------------------------------------- hub models, offline

OFFLINE_FIX = (
    "on a machine with network run `hf download {id}`, bring its Hugging Face cache "
    "(~/.cache/huggingface) here, and run with HF_HUB_OFFLINE=1"
)


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A hub model as ``hf download`` leaves it in the cache (files in place of blob links)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = write_folder(repo / "snapshots" / commit, files)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.mark.parametrize(
    ("name", "revision", "folder_hint"),
    [
        ("prunescope-test/does-not-exist", None, False),
        ("models/my-llama", None, True),  # a folder meant, but there is none in models/
        ("prunescope-test/does-not-exist", "v9", False),
    ],
)
def test_a_hub_model_that_is_not_cached_offline_is_one_sentence(
    tmp_path, monkeypatch, offline, name, revision, folder_hint
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    at = f" at revision {revision}" if revision else ""
    download = name + (f" --revision {revision}" if revision else "")
    hint = f" (and there is no folder {tmp_path / name} either)" if folder_hint else ""
    message = (
        f"{KEY}: hub model {name}{at} could not be downloaded: HF_HUB_OFFLINE is set and it is "
        f"not in the local cache{hint}; {OFFLINE_FIX.format(id=download)}"
    )
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}$"):
        save_pretrained_copy(name, tmp_path / "dense", revision=revision, key=KEY)


def test_a_cached_hub_model_is_saved_offline(saved_files, tmp_path, offline):
    cache_repo(offline, "prunescope-test/tiny-gemma3", saved_files["gemma3"])
    save_pretrained_copy("prunescope-test/tiny-gemma3", tmp_path / "dense", key=KEY)
    model, tokenizer = load_causal_lm(str(tmp_path / "dense"), device="cpu")
    assert model.config.model_type == "gemma3_text" and tokenizer.bos_token == "<bos>"


HUB_FIX = re.escape(
    f"; download it again with `hf download prunescope-test/tiny --force-download`, or check {KEY}"
)
HUB_DAMAGE = {
    "a weight missing": (
        drop_weight,
        rf"lacks the weights {re.escape(MISSING)}, so it is incomplete{HUB_FIX}",
    ),
    "an unexpected tensor": (
        add_tensor,
        r"has the tensors model\.layers\.0\.mlp\.gate\.weight that its config\.json has no "
        rf"place for{HUB_FIX}",
    ),
    "weights cut in half": (
        lambda f: cut_in_half(f / "model.safetensors"),
        r"could not be downloaded: its copy in the local cache is truncated or corrupt \(Error "
        r"while deserializing header: .*\); download it again with `hf download "
        r"prunescope-test/tiny --force-download`",
    ),
    "tokenizer_config.json deleted": (
        lambda f: (f / "tokenizer_config.json").unlink(),
        rf"has no tokenizer_config\.json, so its tokenizer is incomplete{HUB_FIX}",
    ),
    "tokenizer.json deleted": (
        lambda f: (f / "tokenizer.json").unlink(),
        rf"has no tokenizer\.json, so its tokenizer is incomplete{HUB_FIX}",
    ),
    "tokenizer.json cut in half": (
        lambda f: cut_in_half(f / "tokenizer.json"),
        r"has a tokenizer that cannot be loaded \(Unterminated string starting at: .*\)"
        rf"{HUB_FIX}",
    ),
}


@pytest.mark.parametrize("damage", list(HUB_DAMAGE))
def test_a_damaged_hub_model_is_refused_naming_the_id(saved_files, tmp_path, offline, damage):
    snapshot = cache_repo(offline, "prunescope-test/tiny", saved_files["llama"])
    damage_snapshot, problem = HUB_DAMAGE[damage]
    damage_snapshot(snapshot)
    message = f"^{re.escape(KEY)}: hub model prunescope-test/tiny {problem}$"
    with pytest.raises(UserInputError, match=message):
        save_pretrained_copy("prunescope-test/tiny", tmp_path / "dense", key=KEY)


def http_error(kind: type[hub_errors.HfHubHTTPError], message: str) -> BaseException:
    """The error as transformers re-raises it: an OSError from the hub's own."""
    try:
        raise kind(message, response=Mock(headers={}, request=None))
    except hub_errors.HfHubHTTPError as cause:
        try:
            raise OSError("prunescope-test/x is not a local folder ...") from cause
        except OSError as wrapped:
            return wrapped


@pytest.mark.parametrize(
    ("kind", "reason", "fix"),
    [
        (
            hub_errors.GatedRepoError,
            "it is gated and this machine has no access to it",
            "accept its licence at https://huggingface.co/prunescope-test/x and log in with "
            "`hf auth login` (or set HF_TOKEN)",
        ),
        (
            hub_errors.RepositoryNotFoundError,
            "the hub has no model of that name, or it is private",
            f"check {KEY}, and log in with `hf auth login` if it is private",
        ),
        (
            hub_errors.RevisionNotFoundError,
            "the hub has no revision 'v9' of it",
            f"check the revision given beside {KEY}",
        ),
    ],
)
def test_what_the_hub_answered_is_told_with_its_remedy(kind, reason, fix):
    failure = hub_failure(
        http_error(kind, "404"), repo="prunescope-test/x", kind="model", key=KEY, revision="v9"
    )
    assert (failure.reason, failure.fix) == (reason, fix)


def test_no_connection_is_told_as_such(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    try:
        try:
            raise ConnectionError("[Errno -2] Name or service not known")
        except ConnectionError as cause:
            raise hub_errors.LocalEntryNotFoundError("cannot find the requested files") from cause
    except hub_errors.LocalEntryNotFoundError as err:
        failure = hub_failure(err, repo="prunescope-test/x", kind="model", key=KEY)
    assert failure.reason == (
        "huggingface.co cannot be reached ([Errno -2] Name or service not known)"
    )
    assert failure.fix == OFFLINE_FIX.format(id="prunescope-test/x")


def test_the_job_shows_the_sentence_alone(tmp_path, offline, capsys):
    with pytest.raises(SystemExit) as stop, rule_logging(str(tmp_path / "save.log")):
        save_pretrained_copy("prunescope-test/does-not-exist", tmp_path / "dense", key=KEY)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"prunescope: {KEY}: hub model prunescope-test/does-not-exist ")
    assert err.count("\n") == 1 and "Traceback" not in (tmp_path / "save.log").read_text()


# ----------------------------------------------------------------- corpus files


def written_corpus(path: Path) -> Path:
    docs = [Document(f"doc{i}", f"text of document {i}\nwith a second line") for i in range(20)]
    write_jsonl(docs, path)
    return path


def cut_inside_line(number: int):
    def damage(path: Path) -> None:
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[: number - 1]) + lines[number - 1][:40])

    return damage


def replace_line(number: int, text: str):
    def damage(path: Path) -> None:
        lines = path.read_text().splitlines(keepends=True)
        lines[number - 1] = text
        path.write_text("".join(lines))

    return damage


CORPUS_DAMAGE = {
    "cut inside a document": (
        cut_inside_line(10),
        r"line 10 is not valid JSON \(Unterminated string starting at column 24\)",
    ),
    "cut at the end of a document": (
        lambda p: p.write_bytes(p.read_bytes()[:-1]),
        r"line 20 has no newline, so the file is cut short",
    ),
    "a blank line": (
        replace_line(4, "\n"),
        r"line 4 is not valid JSON \(Expecting value at column 1\)",
    ),
    "no text field": (replace_line(17, '{"id": "doc16"}\n'), r"line 17 has no 'text' string"),
    "a null text": (
        replace_line(3, '{"id": "doc2", "text": null}\n'),
        r"line 3 has no 'text' string",
    ),
    "not an object": (replace_line(5, "[1, 2]\n"), r"line 5 is not a JSON object"),
    "bytes that are not UTF-8": (
        lambda p: p.write_bytes(p.read_bytes()[:100] + b"\xff\xfe" + p.read_bytes()[102:]),
        r"line 2 is not UTF-8 text \(invalid start byte\)",
    ),
}


@pytest.mark.parametrize("damage", list(CORPUS_DAMAGE))
def test_a_damaged_corpus_file_is_named_with_its_line(tmp_path, damage):
    path = written_corpus(tmp_path / "train.jsonl")
    damage_file, problem = CORPUS_DAMAGE[damage]
    damage_file(path)
    message = f"^corpus file {re.escape(str(path))} {problem}; delete it and rerun$"
    with pytest.raises(UserInputError, match=message):
        list(read_jsonl(path))


def test_an_intact_corpus_file_reads_back(tmp_path):
    assert len(list(read_jsonl(written_corpus(tmp_path / "train.jsonl")))) == 20


def texts(tmp_path: Path) -> Path:
    (tmp_path / "texts" / "part").mkdir(parents=True)
    (tmp_path / "texts" / "a.txt").write_text("alpha")
    (tmp_path / "texts" / "part" / "b.txt").write_text("beta")
    return tmp_path


CORPUS_KEY = "corpora.mine"
TEXTFILE_PATTERNS = {
    "no match": (
        ["texts/*.md"],
        FileNotFoundError,
        r"corpus pattern 'texts/\*\.md' matches no file \(relative to /.*\)",
    ),
    "a folder": (
        ["texts/part"],
        UserInputError,
        r"corpus pattern 'texts/part' matches only folders; write 'texts/part/\*\*/\*' for their "
        "files",
    ),
    "empty": ([""], UserInputError, r"corpus pattern '' is not a glob \(.*\)"),
}


@pytest.mark.parametrize("case", list(TEXTFILE_PATTERNS))
def test_textfile_patterns_that_give_no_text_are_refused(tmp_path, case):
    patterns, error, problem = TEXTFILE_PATTERNS[case]
    spec = {"paths": patterns, "base": str(texts(tmp_path))}
    with pytest.raises(error, match=f"^{CORPUS_KEY}.paths: {problem}$"):
        list(documents_from_config("textfile", spec, CORPUS_KEY))


def test_textfile_patterns_may_be_absolute_or_recursive(tmp_path):
    base = texts(tmp_path)
    absolute = list(textfile_documents([str(base / "texts" / "*.txt")], base="/nowhere"))
    assert [d.text for d in absolute] == ["alpha"]
    recursive = list(textfile_documents(["texts/**/*.txt"], base=base))
    assert [d.id for d in recursive] == [
        (base / "texts" / "a.txt").as_posix(),
        (base / "texts" / "part" / "b.txt").as_posix(),
    ]


def rows(tmp_path: Path, n: int, field: str = "text") -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({field: f"row {i}"}) + "\n" for i in range(n)))
    return str(path)


def numbers(tmp_path: Path) -> str:
    path = tmp_path / "numbers.jsonl"
    path.write_text("".join(json.dumps({"text": i}) + "\n" for i in range(3)))
    return str(path)


HF_SOURCES = {
    "not cached, offline": (
        lambda tmp: {"dataset": "prunescope-test/does-not-exist"},
        re.escape(
            f"{CORPUS_KEY}.dataset: corpus dataset prunescope-test/does-not-exist could not be "
            "downloaded: HF_HUB_OFFLINE is set and it is not in the local cache; on a machine "
            "with network run `hf download --repo-type dataset prunescope-test/does-not-exist "
            f"--local-dir <folder>`, bring the folder here, and set {CORPUS_KEY}.dataset to "
            "parquet (or json) with data_files naming its files"
        ),
    ),
    "a data file that does not exist": (
        lambda tmp: {"dataset": "json", "data_files": str(tmp / "missing.jsonl")},
        rf"{CORPUS_KEY}: corpus dataset json could not be read \(Unable to find '.*missing\.jsonl'"
        rf"\); check the settings of {CORPUS_KEY}",
    ),
    "a data-file glob matching nothing": (
        lambda tmp: {"dataset": "json", "data_files": str(tmp / "*.parquet")},
        rf"{CORPUS_KEY}: corpus dataset json could not be read \(it found no data\); "
        rf"check the settings of {CORPUS_KEY}",
    ),
    "a split it does not have": (
        lambda tmp: {"dataset": "json", "data_files": rows(tmp, 3), "hf_split": "validation"},
        rf"{CORPUS_KEY}: corpus dataset json could not be read \(Bad split: validation\. "
        rf"Available splits: \['train'\]\); check the settings of {CORPUS_KEY}",
    ),
    "no text field": (
        lambda tmp: {"dataset": "json", "data_files": rows(tmp, 3, field="body")},
        rf"{CORPUS_KEY}.text_field: corpus dataset json has no field 'text' \(its fields: body\)",
    ),
    "numbers in the text field": (
        lambda tmp: {"dataset": "json", "data_files": numbers(tmp)},
        rf"{CORPUS_KEY}.text_field: corpus dataset json row 0 has the value 0, not text",
    ),
    "an empty data file": (
        lambda tmp: {"dataset": "json", "data_files": rows(tmp, 0)},
        rf"{CORPUS_KEY}: corpus dataset json could not be read \(it found no data\); "
        rf"check the settings of {CORPUS_KEY}",
    ),
}


@pytest.mark.parametrize("case", list(HF_SOURCES))
def test_hf_corpora_that_cannot_be_read_are_one_sentence(tmp_path, offline, case):
    spec, message = HF_SOURCES[case]
    with pytest.raises(UserInputError, match=f"^{message}$"):
        list(documents_from_config("hf", spec(tmp_path), CORPUS_KEY))


def test_rows_without_text_are_no_documents(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a", None, "b"]))
    spec = {"dataset": "json", "data_files": str(path)}
    docs = list(documents_from_config("hf", spec, CORPUS_KEY))
    assert [(d.id, d.text) for d in docs] == [("train:0", "a"), ("train:2", "b")]


def test_a_source_that_gives_no_document_is_refused():
    message = f"^{CORPUS_KEY}: the corpus has no documents; check its source settings$"
    with pytest.raises(UserInputError, match=message):
        list(documents_from_config("stdlib", {"exclude": ["*"]}, CORPUS_KEY))


def test_a_split_left_without_documents_is_refused():
    docs = [Document(f"doc{i}", "x") for i in range(3)]
    fractions = {"train": 0.8, "calib": 0.1, "eval": 0.1}
    splits = split_documents(docs, fractions, seed=0)
    empty = next(name for name, split in splits.items() if not split)
    message = (
        f"^{CORPUS_KEY}: the corpus gives its {empty} split no document \\(3 documents in all\\); "
        "add text or change the fractions$"
    )
    with pytest.raises(UserInputError, match=message):
        require_documents(splits, fractions, CORPUS_KEY)
    no_share = {name: (0.0 if not splits[name] else share) for name, share in fractions.items()}
    require_documents(splits, no_share, CORPUS_KEY)  # an empty split nobody asked for is fine
