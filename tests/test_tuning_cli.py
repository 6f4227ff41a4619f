"""`selfinstruct train` / `evaluate` on bad input: a clear message and exit code 2, before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from test_tuning_data import make_corpus

from pipeline.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(make_corpus()))
    return path


def test_train_missing_data(tmp_path):
    result = run("train", "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "no such file" in result.output


def test_train_bad_config_names_line_and_field(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("max_steps: 5\nlora:\n  r: zero\n")
    result = run(
        "train", "--data", str(corpus_file(tmp_path)), "--config", str(config), "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2
    assert "line 3" in result.output and "lora.r" in result.output
    config.write_text("max_step: 5\n")
    result = run(
        "train", "--data", str(corpus_file(tmp_path)), "--config", str(config), "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2 and "max_step" in result.output


def test_train_bad_flag_value(tmp_path):
    result = run(
        "train", "--data", str(corpus_file(tmp_path)), "--out", str(tmp_path / "o"), "--max-steps", "0"
    )
    assert result.exit_code == 2 and "max_steps" in result.output


def test_train_bad_data_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"instruction": "a", "output": "b"}) + "\n" + json.dumps({"instruction": "c"}) + "\n"
    )
    result = run("train", "--data", str(path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "line 2" in result.output and "output" in result.output


def test_train_stops_on_contamination_when_asked(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps(
            {"id": "t", "instruction": "Spell the word apple backwards.", "instances": [{"output": "elppa"}]}
        )
        + "\n"
    )
    config = tmp_path / "train.yaml"
    config.write_text(f"contamination:\n  tasks: {tasks}\n  fail: true\n")
    result = run(
        "train", "--data", str(corpus_file(tmp_path)), "--config", str(config), "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2
    assert "contamination" in result.output and "Spell the word apple backwards" in result.output
    assert not (tmp_path / "o").exists()


def test_train_nothing_fits(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("max_length: 8\ncontamination:\n  enabled: false\n")
    result = run(
        "train", "--data", str(corpus_file(tmp_path)), "--config", str(config), "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2 and "fits in max_length 8" in result.output


def test_evaluate_errors(tmp_path):
    result = run("evaluate", "--adapter", str(tmp_path), "--limit", "3")
    assert result.exit_code == 2 and "not a LoRA adapter" in result.output
    result = run("evaluate", "--limit", "0")
    assert result.exit_code == 2 and "--limit" in result.output
    result = run("evaluate", "--tasks", str(tmp_path / "none.jsonl"))
    assert result.exit_code == 2 and "no such task file" in result.output


def test_evaluate_refuses_an_adapter_without_a_data_record(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    data = corpus_file(tmp_path)
    result = run("evaluate", "--adapter", str(adapter), "--data", str(data))
    assert result.exit_code == 2
    assert "no record of the examples its training held out" in result.output
    result = run("evaluate", "--data", str(data))
    assert result.exit_code == 2 and "--data needs --adapter" in result.output
