"""Bad configs stop before any job with one sentence naming the key; the grid helpers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from rule_reads import declared_reads
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from prunescope.checks import check_config, check_names, model_shape
from prunescope.conditions import (
    NAME_PATTERN,
    TASK_PATTERN,
    canonical,
    conditions,
    format_sparsity,
    parse_condition,
    parse_method,
)
from prunescope.errors import UserInputError
from prunescope.lineage import capture_settings, model_lineage, pruning_options, upstream
from prunescope.plan import (
    ablation_ranking,
    data_stage_targets,
    independent_seed,
    pretrained_label,
    pretrained_layers,
    pretrained_sae_input,
    pretrained_saes,
    pretrained_source,
    saelens_export_settings,
    saelens_exports,
    trained_sae_label,
)
from prunescope.settings import fill_library_defaults

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")
PRESETS = ["config.yaml", "configs/smoke.yaml", "configs/paper.yaml", "configs/feature.yaml"]


def load(name: str = "config.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(fill_library_defaults(config), SCHEMA)
    check_config(config)
    return config


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_are_valid(preset):
    validated(load(preset))


def _set(config: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return config


DELETE = object()
SCHEMA_ERRORS = [
    ("sae.learning_rate", 0.1, "learning_rate"),
    ("sae.k", "sixty-four", "sixty-four"),
    ("sae.seeds", [], r"\[\]"),
    ("sae.steps", 0, "0"),
    ("pruning.grid.magnitude", [1.0], "1.0"),
    ("pruning.grid.magnitude", [-0.1], "-0.1"),
    ("pruning.grid.random", [0.5], "random"),
    ("pruning.wanda.granularity", "column", "column"),
    ("models.tiny.layers", [-1], "-1"),
    ("models.tiny.source", "s3", "s3"),
    ("models.tiny.training", DELETE, "training"),
    ("corpora.stdlib.source", "web", "web"),
    ("activations.skip_bos", "yes", "yes"),
    ("device", "tpu", "tpu"),
    ("unknown_block", {}, "unknown_block"),
    ("align.mip.node_limit", 0, "node_limit"),
    ("align.mip.node_limit", 2.5, "2.5"),
    ("analysis.logistic_taus", [], r"\[\] should be non-empty"),
]


@pytest.mark.parametrize(("key", "value", "message"), SCHEMA_ERRORS)
def test_schema_rejects_bad_values_naming_them(key, value, message):
    config = _set(load(), key, value)
    with pytest.raises(WorkflowError, match=message):
        validate(fill_library_defaults(config), SCHEMA)


SEMANTIC_ERRORS = [
    ("models.tiny.layers", [7], "layer 7 is past the model's depth"),
    ("models.tiny.corpus", "wiki", "models.tiny.corpus 'wiki'"),
    ("perplexity.corpus", "wiki", "perplexity.corpus 'wiki'"),
    ("perplexity.stride", 128, "perplexity.stride"),
    ("pruning.grid.wanda_2of4", [0.4], "sparsity 0.5, not 0.4"),
    ("pruning.grid.wanda_4of4", [1 - 1e-9], "N < M"),
    ("corpora.stdlib.fractions", {"train": 0.9, "eval": 0.3}, "add up to 1.2"),
    ("activations.context", 4096, "activations.context 4096 exceeds models.tiny.architecture"),
    ("analysis.primary_tau", 0.75, "primary_tau 0.75 is not one of analysis.taus"),
    ("analysis.reference_seed", 9, "reference_seed 9 is not in sae.seeds"),
    ("analysis.ablation.conditions", {"tiny": "wanda-0.9"}, "wanda-0.9"),
]


@pytest.mark.parametrize(("key", "value", "message"), SEMANTIC_ERRORS)
def test_semantic_checks_name_the_key(key, value, message):
    config = copy.deepcopy(load())
    validate(fill_library_defaults(config), SCHEMA)
    _set(config, key, value)
    with pytest.raises(ValueError, match=message):
        check_config(config)


def _renamed(config: dict, block: str, old: str, new: str) -> dict:
    names = config["align"]["tasks"] if block == "align.tasks" else config[block]
    names[new] = names.pop(old)
    return config


@pytest.mark.parametrize(
    ("block", "old", "new"),
    [
        ("models", "tiny", ".."),
        ("models", "tiny", "."),
        ("models", "tiny", "team/llama"),
        ("models", "tiny", "-tiny"),
        ("corpora", "stdlib", "fine web"),
        ("corpora", "stdlib", ".hidden"),
        ("align.tasks", "dnf16", "DNF-16"),
    ],
)
def test_a_name_that_cannot_be_a_folder_is_refused_naming_it(block, old, new):
    config = _renamed(load(), block, old, new)
    with pytest.raises(UserInputError, match=rf"^{re.escape(block)} has '{re.escape(new)}', "):
        check_names(config)


def test_ordinary_hub_and_dataset_names_are_accepted():
    config = _renamed(_renamed(load(), "models", "tiny", "gemma-2-2b"), "corpora", "stdlib", "x")
    config["models"]["gemma-2-2b"]["corpus"] = "fineweb-edu"
    config = _renamed(config, "corpora", "x", "fineweb-edu")
    config["analysis"]["ablation"]["conditions"] = {"gemma-2-2b": "wanda-0.4"}
    config["models"]["gemma-2-2b"]["pretrained_saes"] = {
        2: "results/saelens/gemma-2-2b/dense/L2/seed1"
    }
    check_names(config)
    validated(config)


def test_the_schema_and_the_wildcards_share_one_name_pattern():
    schema = yaml.safe_load(Path(SCHEMA).read_text())["properties"]
    for block in ("models", "corpora"):
        assert schema[block]["propertyNames"]["pattern"] == f"^{NAME_PATTERN}$"
    tasks = schema["align"]["properties"]["tasks"]["propertyNames"]["pattern"]
    assert tasks == f"^{TASK_PATTERN}$"
    common = (ROOT / "workflow/rules/common.smk").read_text()
    assert "model=NAME_PATTERN" in common and "task=TASK_PATTERN" in common


def _only_zero_sparsity(c):
    c["pruning"]["grid"] = {"magnitude": [0.0]}


def _k_above_d_sae(c):
    c["sae"]["k"] = 2000  # expansion 8 x d_model 128 = 1024 latents


def _two_of_four_on_an_odd_width(c):
    c["models"]["tiny"]["architecture"]["intermediate_size"] = 386
    c["pruning"]["grid"]["wanda_2of4"] = [0.5]


def _heads_do_not_divide_the_width(c):
    c["models"]["tiny"]["architecture"]["num_attention_heads"] = 3


def _kv_heads_do_not_divide_the_heads(c):
    c["models"]["tiny"]["architecture"]["num_key_value_heads"] = 3


def _default_depth_of_32_layers(c):
    del c["models"]["tiny"]["architecture"]["num_hidden_layers"]
    c["models"]["tiny"]["layers"] = [32]


def _one_seed(c):
    c["sae"]["seeds"] = [0]


def _too_many_ablated_features(c):
    c["analysis"]["ablation"]["n_features"] = 600  # 2 x 600 > 8 x 128


def _fewer_cached_tokens_than_a_batch(c):
    c["activations"]["train_tokens"] = 512


def _fewer_eval_tokens_than_a_window(c):
    c["activations"]["eval_tokens"] = 64


def _fewer_perplexity_tokens_than_a_window(c):
    c["perplexity"]["max_tokens"] = 100


def _fewer_calibration_tokens_than_a_window(c):
    c["pruning"]["calibration"]["n_tokens"] = 100


def _fewer_training_tokens_than_a_window(c):
    c["models"]["tiny"]["training"]["train_tokens"] = 64


def _no_eval_documents(c):
    c["corpora"]["stdlib"]["fractions"] = {"train": 0.9, "calib": 0.1, "eval": 0.0}


def _no_calibration_documents(c):
    c["corpora"]["stdlib"]["fractions"] = {"train": 0.9, "calib": 0.0, "eval": 0.1}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_only_zero_sparsity, "pruning.grid gives tiny no pruned condition: every sparsity is 0"),
        (_k_above_d_sae, r"sae.k 2000 is above d_sae = .* = 8 × 128 = 1024 for models.tiny"),
        (
            _two_of_four_on_an_odd_width,
            "pruning.grid.wanda_2of4: 2:4 pruning .* groups of 4, but intermediate_size is 386",
        ),
        (_heads_do_not_divide_the_width, "hidden_size 128 is not a multiple of num_attention"),
        (_kv_heads_do_not_divide_the_heads, "num_attention_heads 4 is not a multiple of num_key"),
        (_default_depth_of_32_layers, r"layer 32 is past the model's depth \(32 layers\)"),
        (_one_seed, "sae.seeds needs at least two seeds"),
        (_too_many_ablated_features, "n_features 600: .* the 1024 latents of models.tiny"),
        (_fewer_cached_tokens_than_a_batch, "train_tokens 512 is less than one sae.batch_size"),
        (_fewer_eval_tokens_than_a_window, "eval_tokens 64 is less than one activations.context"),
        (
            _fewer_perplexity_tokens_than_a_window,
            "max_tokens 100 is less than one perplexity.window",
        ),
        (_fewer_calibration_tokens_than_a_window, "n_tokens 100 is less than one pruning.cal"),
        (_fewer_training_tokens_than_a_window, "training.train_tokens 64 is less than one models"),
        (_no_eval_documents, "fractions.eval is 0, but models.tiny reads its eval split"),
        (_no_calibration_documents, "fractions.calib is 0, but models.tiny reads its calib split"),
    ],
)
def test_what_the_config_alone_decides_is_refused_before_any_job(edit, message):
    config = copy.deepcopy(load())
    validate(fill_library_defaults(config), SCHEMA)
    edit(config)
    with pytest.raises(UserInputError, match=message):
        check_config(config)


def _hub_folder(tmp_path: Path, **shape) -> dict:
    """A config whose model is a hub model in a local folder with this config.json."""
    folder = tmp_path / "my-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **shape}))
    config = validated(load())
    config["models"]["ext"] = {
        "source": "hf",
        "name": str(folder),
        "corpus": "stdlib",
        "layers": [3],
        "dtype": "float32",
    }
    return config


@pytest.mark.workflow
def test_a_hub_folder_s_config_json_is_checked_at_dry_run(tmp_path):
    shape = dict(hidden_size=64, intermediate_size=130, num_hidden_layers=3, num_attention_heads=4)
    config = _hub_folder(tmp_path, **shape)
    with pytest.raises(UserInputError, match=r"models.ext.layers: layer 3 is past .* \(3 layers"):
        check_config(config)
    config["models"]["ext"]["layers"] = [2]
    config["models"]["ext"]["grid"] = {"magnitude_2of4": [0.5]}
    with pytest.raises(UserInputError, match="intermediate_size is 130 in its config.json"):
        check_config(config)
    config["models"]["ext"]["grid"] = {"magnitude": [0.5]}
    check_config(config)


def test_a_hub_id_not_yet_downloaded_is_left_to_its_first_job():
    config = validated(load())
    config["models"]["ext"] = {
        "source": "hf",
        "name": "prunescope-test/not-downloaded",
        "corpus": "stdlib",
        "layers": [300],
        "dtype": "float32",
    }
    assert model_shape(config, "ext") is None
    check_config(config)


def _hub_model(config: dict, name: str) -> dict:
    config["models"]["ext"] = {
        "source": "hf",
        "name": name,
        "corpus": "stdlib",
        "layers": [3],
        "dtype": "float32",
    }
    return config


@pytest.mark.workflow
def test_a_hub_model_in_the_local_cache_is_checked_at_dry_run(tmp_path, monkeypatch):
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/}."""
    import huggingface_hub.constants

    repo = tmp_path / "hub/models--prunescope-test--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text("0" * 40)
    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "llama", **shape}))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = _hub_model(validated(load()), "prunescope-test/tiny")
    assert model_shape(config, "ext")["num_hidden_layers"] == 2
    with pytest.raises(UserInputError, match=r"models.ext.layers: layer 3 is past .* \(2 layers"):
        check_config(config)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config["models"]["ext"]["layers"] = [1]
    check_config(config)  # offline, but in the cache: nothing to download


@pytest.mark.workflow
def test_offline_with_a_hub_model_not_in_the_cache_is_refused_at_dry_run(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = _hub_model(validated(load()), "prunescope-test/not-downloaded")
    with pytest.raises(UserInputError, match="not in the local Hugging Face cache and HF_HUB_OFF"):
        check_config(config)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    check_config(config)  # online: the download job will fetch it


def test_a_folder_path_without_dot_slash_is_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _hub_model(validated(load()), "models/team/llama")
    with pytest.raises(UserInputError, match="model folder 'models/team/llama' does not exist"):
        check_config(config)
    folder = tmp_path / "models/team/llama"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    with pytest.raises(UserInputError, match=r"layer 3 is past the model's depth \(2 layers"):
        check_config(config)


@pytest.mark.parametrize(
    ("sparsity", "name"),
    [(0.3, "0.3"), (0.00001, "0.00001"), (0.1234567, "0.1234567"), (0.30000000000000004, None)],
)
def test_every_sparsity_has_a_name_the_rules_match_and_that_reads_back(sparsity, name):
    spelled = format_sparsity(sparsity)
    assert re.fullmatch(r"0\.[0-9]+", spelled) and float(spelled) == sparsity
    if name:
        assert spelled == name


def test_missing_hub_model_folder_and_gemma_fp16_are_refused(tmp_path):
    config = validated(load())
    config["models"]["ext"] = {
        "source": "hf",
        "name": str(tmp_path / "nowhere"),
        "corpus": "stdlib",
        "layers": [0],
        "dtype": "float32",
    }
    with pytest.raises(ValueError, match="nowhere.*does not exist"):
        check_config(config)
    config["models"]["ext"].update(name="google/gemma-2-2b", dtype="float16")
    with pytest.raises(ValueError, match="float16 is refused for Gemma"):
        check_config(config)


def test_conditions_and_targets_of_the_default():
    config = validated(load())
    conds = conditions(config, "tiny")
    assert conds[0] == "dense" and "wanda-0.4" in conds and "magnitude-0.6" in conds
    targets = data_stage_targets(config)
    seeds = len(config["sae"]["seeds"])
    assert len([t for t in targets if t.startswith("results/sae/")]) == len(conds) * seeds
    assert "results/sae/tiny/wanda-0.2/L2/seed1/metrics.json" in targets


def test_per_model_grid_overrides_the_default():
    config = validated(load("configs/paper.yaml"))
    assert conditions(config, "llama32_1b") == ["dense", "magnitude-0.5", "wanda-0.3", "wanda-0.5"]
    assert len(conditions(config, "gemma3_1b")) == 11


def test_method_and_condition_parsing():
    assert parse_method("wanda_2of4") == ("wanda", (2, 4))
    assert parse_method("sparsegpt") == ("sparsegpt", None)
    assert parse_condition("magnitude-0.25") == ("magnitude", 0.25)
    assert parse_condition("dense") == ("dense", 0.0)
    with pytest.raises(ValueError, match="random"):
        parse_method("random")


def test_pruning_options_hold_only_what_the_method_reads():
    config = validated(load())
    assert pruning_options(config, "tiny", "magnitude") == {"method": "magnitude", "nm": None}
    wanda = pruning_options(config, "tiny", "wanda_2of4")
    assert wanda["granularity"] == "row" and wanda["nm"] == [2, 4]
    assert wanda["calibration"]["corpus"] == "stdlib"
    assert "blocksize" in pruning_options(config, "tiny", "sparsegpt")


def test_conda_environment_pins_match_requirements():
    def pins(lines):
        return sorted(
            line.strip().lstrip("- ").strip()
            for line in lines
            if "==" in line and not line.strip().startswith("#")
        )

    requirements = pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "envs/prunescope.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(f"- {p}" for p in pip_section) == requirements
    assert "torch==2.13.0" in requirements


def test_canonical_params_ignore_key_order():
    from prunescope.conditions import canonical

    a = {"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": None}}
    b = {"a": {"x": None, "y": [{"p": 2, "q": 1}]}, "b": 1}
    assert repr(canonical(a)) == repr(canonical(b))
    assert list(canonical(a)) == ["a", "b"]


def _lineages(config: dict, model: str) -> dict[str, dict]:
    return {cond: model_lineage(config, model, cond) for cond in conditions(config, model)}


def test_a_pruning_edit_reaches_the_lineage_of_exactly_the_conditions_it_changes():
    config = validated(load())
    before = _lineages(config, "tiny")
    config["pruning"]["wanda"]["granularity"] = "matrix"
    after = _lineages(config, "tiny")
    changed = {cond for cond in before if before[cond] != after[cond]}
    assert changed == {"wanda-0.2", "wanda-0.4", "wanda-0.6"}


def test_a_corpus_edit_reaches_every_checkpoint_of_a_model_trained_here():
    config = validated(load())
    before = _lineages(config, "tiny")
    config["corpora"]["stdlib"]["seed"] = 1
    after = _lineages(config, "tiny")
    assert all(before[cond] != after[cond] for cond in before)


def test_a_hub_model_s_corpus_reaches_only_its_calibrated_conditions():
    config = validated(load("configs/paper.yaml"))
    model = next(name for name, spec in config["models"].items() if spec["source"] == "hf")
    corpus = config["models"][model]["corpus"]
    before = _lineages(config, model)
    config["corpora"][corpus]["seed"] = 12345
    after = _lineages(config, model)
    changed = {cond for cond in before if before[cond] != after[cond]}
    assert changed == {c for c in before if c.split("-")[0] in {"wanda", "sparsegpt"}}
    assert changed and "dense" not in changed


def test_what_is_cached_or_compared_is_not_part_of_a_checkpoint_s_lineage():
    config = validated(load())
    before = _lineages(config, "tiny")
    config["models"]["tiny"]["layers"] = [1, 2]
    config["sae"]["k"] = 32
    config["activations"]["batch_size"] = 8
    assert _lineages(config, "tiny") == before


def test_capture_settings_and_job_upstreams_carry_the_checkpoint_s_lineage():
    config = validated(load())
    settings = capture_settings(config, "tiny", "wanda-0.4")
    assert settings["upstream"]["model"] == model_lineage(config, "tiny", "wanda-0.4")
    assert settings["activations"] == canonical(config["activations"])
    reads = declared_reads()
    for side, cond in (("pruned", "magnitude-0.2"), ("dense", "dense")):
        wildcards = {"model": "tiny", "layer": "2", "cond": "magnitude-0.2", "side": side}
        ablation = upstream(config, reads["ablate_features"], wildcards)
        assert ablation["model"] == model_lineage(config, "tiny", cond)
    pruning = upstream(config, reads["prune_model"], {"model": "tiny", "method": "wanda"})
    assert pruning["model"] == model_lineage(config, "tiny", "dense")
    assert "train_sae" not in reads  # its cache's settings carry the lineage instead


def test_rq5_ranks_by_activation_survival_unless_asked_for_the_decoder():
    config = validated(load())
    assert config["analysis"]["ablation"]["selection"] == "activation"
    args = ("tiny", 2, "wanda-0.4")
    assert ablation_ranking(config, *args, "dense") == "results/survival/tiny/L2/wanda-0.4.csv"
    assert (
        ablation_ranking(config, *args, "pruned")
        == "results/survival/tiny/L2/reverse/wanda-0.4_seed0.csv"
    )
    config["analysis"]["ablation"]["selection"] = "decoder"
    for side in ("dense", "pruned"):
        assert ablation_ranking(config, *args, side).endswith("dense_seed0__wanda-0.4_seed0.h5")


def test_the_independent_seed_is_the_first_seed_that_is_not_the_reference():
    config = validated(load())
    config["sae"]["seeds"], config["analysis"]["reference_seed"] = [3, 1, 2], 3
    assert independent_seed(config) == 1
    config["analysis"]["reference_seed"] = 1
    assert independent_seed(config) == 3


def test_every_sae_gets_an_saelens_copy_named_for_transformer_lens():
    config = validated(load())
    exports = saelens_exports(config)
    assert len(exports) == 7 * 3 and "results/saelens/tiny/wanda-0.4/L2/seed1" in exports
    assert saelens_export_settings(config, "tiny", "2") == {
        "hook_name": "blocks.2.hook_resid_post",
        "model_name": "tiny",
    }
    paper = validated(load("configs/paper.yaml"))
    got = saelens_export_settings(paper, "gemma2_2b", 12)
    assert got == {"hook_name": "blocks.12.hook_resid_post", "model_name": "google/gemma-2-2b"}


# --- SAEs trained elsewhere (models.<m>.pretrained_saes) ----------------------------------

GEMMA = "google/gemma-scope-2b-pt-res"


def _with_pretrained(saes: dict, layers=(1, 2, 3)) -> dict:
    """The default config with these pretrained SAEs for models.tiny, cached at ``layers``."""
    config = validated(load())
    config["models"]["tiny"]["layers"] = list(layers)
    config["models"]["tiny"]["pretrained_saes"] = saes
    return config


@pytest.fixture
def sae_folder(tmp_path, monkeypatch) -> str:
    """A local SAE folder, relative to the working directory (the workflow's)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "saes/gs").mkdir(parents=True)
    return "saes/gs"


def test_each_form_of_pretrained_sae_is_read_the_same_way(sae_folder):
    saes = {
        1: sae_folder,
        2: {"path": sae_folder, "label": "Gemma Scope 16k"},
        3: {"repo": GEMMA, "path": "/layer_3/width_16k/average_l0_71/"},
    }
    config = _with_pretrained(saes)
    validate(fill_library_defaults(copy.deepcopy(config)), SCHEMA)
    check_config(config)
    assert pretrained_saes(config, "tiny") == {
        1: {"source": sae_folder, "label": sae_folder},
        2: {"source": sae_folder, "label": "Gemma Scope 16k"},
        3: {
            "source": {"repo": GEMMA, "path": "/layer_3/width_16k/average_l0_71/"},
            "label": f"{GEMMA}/layer_3/width_16k/average_l0_71",
        },
    }
    assert pretrained_layers(config) == [("tiny", 1), ("tiny", 2), ("tiny", 3)]
    # the import job waits for a local SAE (a rule may write it); a hub one is a parameter
    assert pretrained_sae_input(config, "tiny", "1") == [sae_folder]
    assert pretrained_sae_input(config, "tiny", 2) == [sae_folder]
    assert pretrained_sae_input(config, "tiny", "3") == []


@pytest.mark.parametrize(
    ("entry", "source", "label"),
    [
        ("a/b", "a/b", "a/b"),
        ({"path": "a/b"}, "a/b", "a/b"),
        ({"path": "a/b", "label": "mine"}, "a/b", "mine"),
        (
            {"repo": GEMMA, "path": "layer_3/w"},
            {"repo": GEMMA, "path": "layer_3/w"},
            f"{GEMMA}/layer_3/w",
        ),
        (
            {"repo": GEMMA, "path": "layer_3/w/params.npz", "revision": "v2"},
            {"repo": GEMMA, "path": "layer_3/w/params.npz", "revision": "v2"},
            f"{GEMMA}@v2/layer_3/w/params.npz",
        ),
        (
            {"repo": GEMMA, "path": "layer_3/w", "revision": "v2", "label": "GS"},
            {"repo": GEMMA, "path": "layer_3/w", "revision": "v2"},
            "GS",
        ),
    ],
)
def test_pretrained_source_and_default_label(entry, source, label):
    assert pretrained_source(entry) == source
    assert pretrained_label(entry) == label


def test_the_presets_pretrained_sae_is_the_saelens_export_a_rule_writes():
    config = validated(load())
    assert (
        trained_sae_label(config)
        == f"trained here: dense seed {config['analysis']['reference_seed']}"
    )
    entry = pretrained_saes(config, "tiny")
    assert entry == {
        2: {
            "source": "results/saelens/tiny/dense/L2/seed1",
            "label": "SAELens export of dense seed 1",
        }
    }
    assert pretrained_sae_input(config, "tiny", "2") == ["results/saelens/tiny/dense/L2/seed1"]
    assert "results/saelens/tiny/dense/L2/seed1" in saelens_exports(config)


KEY = "models.tiny.pretrained_saes"


@pytest.mark.parametrize(
    ("saes", "message"),
    [
        ({3: "saes/gs"}, f"{KEY} has layer 3, which is not in models.tiny.layers [2]: "),
        ({"L2": "saes/gs"}, f"{KEY} has layer 'L2', which is not in models.tiny.layers [2]"),
        ({2: "saes/missing"}, f"{KEY}.2: SAE path 'saes/missing' does not exist (for a hub SAE"),
        ({2: {"path": "saes/missing", "label": "x"}}, f"{KEY}.2: SAE path 'saes/missing' does"),
        (
            {2: "results/pretrained_sae/tiny/L2"},
            f"{KEY}.2: SAE path 'results/pretrained_sae/tiny/L2' is inside results/pretrained_sae/",
        ),
        (
            {2: "results/pretrained_sae/other/L2/x"},
            f"{KEY}.2: SAE path 'results/pretrained_sae/other/L2/x' is inside "
            "results/pretrained_sae/",
        ),
        ({2: {"path": "saes/gs", "revision": "v1"}}, f"{KEY}.2.revision is set without a repo"),
        (
            {2: {"path": "saes/gs", "label": "trained here: dense seed 0"}},
            f"{KEY}.2 is labelled 'trained here: dense seed 0', the name the tables give the SAE",
        ),
    ],
)
def test_a_pretrained_sae_that_cannot_be_read_is_refused_naming_its_key(sae_folder, saes, message):
    config = _with_pretrained(saes, layers=[2])
    assert trained_sae_label(config) == "trained here: dense seed 0"
    with pytest.raises(UserInputError, match=f"^{re.escape(message)}"):
        check_config(config)


@pytest.mark.parametrize(
    "entry",
    [
        "results/saelens/tiny/dense/L2/seed1",  # not there yet: the SAELens export rule writes it
        "./results/saelens/tiny/dense/L2/seed1",
        {"path": "results/saelens/tiny/wanda-0.4/L2/seed2", "label": "ours, another seed"},
        {"repo": GEMMA, "path": "layer_2/width_16k/average_l0_71", "revision": "main"},
        {"repo": "someone/not-downloaded", "path": ""},
    ],
)
def test_what_a_rule_writes_or_the_hub_holds_is_accepted_before_it_exists(sae_folder, entry):
    check_config(_with_pretrained({2: entry}, layers=[2]))


@pytest.mark.parametrize(
    "entry",
    ["", {"label": "no path"}, {"path": "a", "subfolder": "b"}, {"repo": "", "path": "a"}],
)
def test_the_schema_refuses_a_malformed_pretrained_sae(entry):
    config = _set(load(), "models.tiny.pretrained_saes", {2: entry})
    message = f"{entry!r} is not valid under any of the given schemas"
    with pytest.raises(WorkflowError, match=re.escape(message)):
        validate(fill_library_defaults(config), SCHEMA)
    config["models"]["tiny"]["pretrained_saes"] = {2: {"path": "a", "label": "fine"}}
    validate(fill_library_defaults(config), SCHEMA)


@pytest.mark.workflow
def test_the_workflow_refuses_a_missing_pretrained_sae_before_any_job(tmp_path):
    from conftest import run_snakemake

    config = load()
    config["models"]["tiny"]["pretrained_saes"] = {2: "saes/missing"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    out = run_snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path), check=False)
    assert (
        "models.tiny.pretrained_saes.2: SAE path 'saes/missing' does not exist (for a hub SAE "
        "write {repo: <owner/name>, path: <folder or weights file>})"
    ) in out, out[-2000:]
    assert not (tmp_path / "results").exists()


def test_the_imported_copy_is_refused_even_once_it_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results/pretrained_sae/tiny/L2").mkdir(parents=True)
    config = _with_pretrained({2: "results/pretrained_sae/tiny/L2"}, layers=[2])
    with pytest.raises(UserInputError, match=r"is inside results/pretrained_sae/"):
        check_config(config)


def test_one_label_may_serve_several_layers_and_an_empty_hub_path_names_the_repo():
    from prunescope.plan import pretrained_label

    entry = {"repo": "google/gemma-scope-2b-pt-res", "path": "", "label": "Gemma Scope 16k"}
    config = _with_pretrained({2: entry, 3: entry}, layers=[2, 3])
    check_config(config)
    assert pretrained_label({"repo": "google/x", "path": "/"}) == "google/x"
    assert pretrained_label({"repo": "google/x", "path": "", "revision": "v1"}) == "google/x@v1"


@pytest.mark.workflow
def test_a_hub_folder_of_an_unsupported_family_is_refused_at_dry_run(tmp_path):
    config = _hub_folder(tmp_path, hidden_size=64, num_hidden_layers=4, num_attention_heads=4)
    folder = Path(config["models"]["ext"]["name"])
    raw = {"model_type": "bloom", "architectures": ["BloomForCausalLM"], "n_layer": 4}
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(
        UserInputError,
        match=r"^models\.ext\.name: BloomForCausalLM \(model_type 'bloom'\) is not an "
        r"architecture prunescope knows: .*Llama, .*GPT-2, GPT-NeoX \(Pythia\), OPT",
    ):
        check_config(config)


def test_gpt2_widths_are_read_under_their_own_names(tmp_path):
    """GPT-2's config.json says n_embd, n_layer, n_head and leaves n_inner null (4 x n_embd):
    the dry-run checks still see its depth and widths."""
    config = _hub_folder(tmp_path)
    folder = Path(config["models"]["ext"]["name"])
    raw = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 64}
    raw |= {"n_layer": 3, "n_head": 4, "n_inner": None, "vocab_size": 100}
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserInputError, match=r"models.ext.layers: layer 3 is past .* \(3 layers"):
        check_config(config)
    config["models"]["ext"]["layers"] = [2]
    config["models"]["ext"]["grid"] = {"magnitude_3of5": [0.6]}
    with pytest.raises(UserInputError, match="hidden_size is 64 in its config.json"):
        check_config(config)
    shape = model_shape(config, "ext")
    assert (shape["hidden_size"], shape["intermediate_size"]) == (64, 256)
    assert shape["num_hidden_layers"] == 3 and shape["num_attention_heads"] == 4


@pytest.mark.workflow
@pytest.mark.parametrize(
    "path",
    [
        "results/sae/tiny/dense/L2/seed1",  # files, not a folder a rule writes
        "results/saelens/other/dense/L2/seed1",  # no such model in this config
        "results/saelens/tiny/dense/L2/seed9",  # no such seed
    ],
)
def test_a_results_path_this_run_does_not_write_is_refused_at_dry_run(sae_folder, path):
    config = _with_pretrained({2: path}, layers=[2])
    with pytest.raises(
        UserInputError,
        match=rf"^{KEY}\.2: SAE path '{re.escape(path)}' does not exist, and this run "
        r"writes no SAE folder there \(the ones it writes are its SAELens exports",
    ):
        check_config(config)
