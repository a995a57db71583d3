"""One source of defaults: the settings dataclasses fill the keys they own, the schema the rest."""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from prunescope.settings import (
    MIP_CONFIG_KEYS,
    SAE_CONFIG_KEYS,
    THRESHOLD_DEFAULTS,
    MipSettings,
    SAEConfig,
    fill_library_defaults,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
BLOCKS = {
    "sae": (SCHEMA["properties"]["sae"]["properties"], SAEConfig, SAE_CONFIG_KEYS),
    "align.mip": (
        SCHEMA["properties"]["align"]["properties"]["mip"]["properties"],
        MipSettings,
        MIP_CONFIG_KEYS,
    ),
}


def defaults_of(settings: type) -> dict:
    return {field.name: field.default for field in fields(settings)}


@pytest.mark.parametrize("block", BLOCKS)
def test_each_key_a_dataclass_owns_has_no_second_default_in_the_schema(block):
    properties, settings, keys = BLOCKS[block]
    assert set(keys) == set(properties) - {"seeds"}
    assert set(keys) <= set(defaults_of(settings))
    assert [key for key in keys if "default" in properties[key]] == []


def test_the_paper_s_thresholds_have_no_second_default_in_the_schema():
    properties = SCHEMA["properties"]["analysis"]["properties"]
    assert [key for key in THRESHOLD_DEFAULTS if "default" in properties[key]] == []


def test_a_config_that_leaves_the_keys_out_runs_the_library_s_defaults():
    config = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    for key in SAE_CONFIG_KEYS:
        config["sae"].pop(key)
    config["align"].pop("mip")
    for key in THRESHOLD_DEFAULTS:
        config["analysis"].pop(key, None)
    validate(fill_library_defaults(config), str(SCHEMA_PATH))
    assert {key: config["analysis"][key] for key in THRESHOLD_DEFAULTS} == THRESHOLD_DEFAULTS
    assert config["analysis"]["taus"] is not config["analysis"]["correlation_taus"]
    sae, mip = defaults_of(SAEConfig), defaults_of(MipSettings)
    assert config["sae"] == {
        "seeds": config["sae"]["seeds"],
        **{k: sae[k] for k in SAE_CONFIG_KEYS},
    }
    assert config["align"]["mip"] == {k: mip[k] for k in MIP_CONFIG_KEYS}


def test_what_a_config_sets_is_kept_and_a_bad_block_is_left_to_the_schema():
    config = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    before = copy.deepcopy(config)
    fill_library_defaults(config)
    for key in ("expansion", "k", "steps", "warmup_steps"):
        assert config["sae"][key] == before["sae"][key]
    assert config["align"]["mip"]["node_limit"] == before["align"]["mip"]["node_limit"]
    assert "gap" not in before["align"]["mip"] and config["align"]["mip"]["gap"] == 1e-4
    odd = {"sae": [1, 2], "analysis": 3, "align": None}
    assert fill_library_defaults(copy.deepcopy(odd)) == odd
