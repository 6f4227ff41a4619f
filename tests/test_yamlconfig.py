"""Configuration files: errors name file, line and field; command-line values override the file."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from pipeline.core.errors import InputFileError, UserError
from pipeline.core.yamlconfig import dump_config, load_config


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "bundled"
    concurrency: int = 64


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rounds: int = 1
    inner: Inner = Inner()


def test_overrides_win_and_none_means_not_given(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rounds: 3\ninner:\n  model: a\n")
    config = load_config(path, Outer, {"inner.model": "b", "rounds": None})
    assert config.rounds == 3 and config.inner.model == "b"


def test_bad_value_and_unknown_key_name_their_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rounds: 3\ninner:\n  concurrency: lots\n  colour: red\n")
    with pytest.raises(InputFileError) as info:
        load_config(path, Outer)
    assert info.value.path == str(path)
    assert info.value.problems[0].startswith('line 3, field "inner.concurrency"')
    assert info.value.problems[1] == 'line 4, field "inner.colour": Extra inputs are not permitted'


def test_bad_override_is_blamed_on_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rounds: 3\n")
    with pytest.raises(InputFileError) as info:
        load_config(path, Outer, {"rounds": "many"})
    assert info.value.problems[0].startswith('command line, field "rounds"')


def test_yaml_syntax_error_and_non_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rounds: 3\ninner: [\n")
    with pytest.raises(UserError, match=r"c\.yaml, line 3: bad YAML"):
        load_config(path, Outer)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(path, Outer)
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "missing.yaml", Outer)


def test_dump_round_trips(tmp_path):
    config = Outer(rounds=5, inner=Inner(model="m"))
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(path, Outer) == config
