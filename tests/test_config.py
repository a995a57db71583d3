"""Bad configs stop before any job with one sentence naming the key; the grid helpers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from prunescope.plan import (
    canonical,
    capture_settings,
    check_config,
    conditions,
    data_stage_targets,
    model_lineage,
    parse_condition,
    parse_method,
    pruning_options,
    upstream_of,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")
PRESETS = ["config.yaml", "configs/smoke.yaml", "configs/paper.yaml"]


def load(name: str = "config.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, SCHEMA)
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
]


@pytest.mark.parametrize(("key", "value", "message"), SCHEMA_ERRORS)
def test_schema_rejects_bad_values_naming_them(key, value, message):
    config = _set(load(), key, value)
    with pytest.raises(WorkflowError, match=message):
        validate(config, SCHEMA)


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
    validate(config, SCHEMA)
    _set(config, key, value)
    with pytest.raises(ValueError, match=message):
        check_config(config)


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
    from prunescope.plan import canonical

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
    ablation = upstream_of(config, "ablate_features", "tiny", "magnitude-0.2")
    assert ablation["model"] == model_lineage(config, "tiny", "magnitude-0.2")
    assert upstream_of(config, "prune_model", "tiny")["model"] == model_lineage(
        config, "tiny", "dense"
    )
    with pytest.raises(ValueError, match="no upstream lineage is defined for rule 'train_sae'"):
        upstream_of(config, "train_sae", "tiny")
