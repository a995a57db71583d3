"""A config file that is not valid YAML is named with its line and column."""

from __future__ import annotations

import pytest

from prunescope.configcheck import check_config_file, main
from prunescope.errors import UserInputError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sae:\n  k: [8, 16\n  lr: 0.001\n", r"at line 3, column 5: expected ',' or ']'"),
        ("sae:\n  k: 8\n lr: 0.001\n", r"at line 3, column 2: expected <block end>"),
        ("sae:\n\tk: 8\n", r"at line 2, column 1: found character '\\t'"),
        ("models: {tiny: {layers: [1]}\n", r"at line 2, column 1: expected ',' or '}'"),
        ("a: 'unclosed\n", r"at line 2, column 1: found unexpected end of stream"),
        ("- just\n- a list\n", r"a list, not a mapping of keys"),
        ("", r"empty"),
        ("# only a comment\n", r"empty"),
    ],
)
def test_broken_yaml_is_named_with_line_and_column(tmp_path, text, message):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    with pytest.raises(UserInputError, match=rf"^config file {path} is .*{message}"):
        check_config_file(path)


def test_a_file_that_is_not_text(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_bytes(b"sae:\n  k: \xff\xfe\n")
    with pytest.raises(UserInputError, match="is not UTF-8 text"):
        check_config_file(path)


def test_the_presets_pass_and_the_command_says_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sae:\n  k: 8\n lr: 0.001\n")
    assert (
        main(["config.yaml", "configs/smoke.yaml", "configs/paper.yaml", "configs/feature.yaml"])
        == 0
    )
    assert main([str(bad), str(tmp_path / "missing.yaml")]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"prunescope: config file {bad} is not valid")
    assert lines[1] == f"prunescope: config file {tmp_path / 'missing.yaml'} does not exist"
