"""Generation settings: the recipes' defaults, the presets, clear errors, and what a rerun may change."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.yamlconfig import load_config
from pipeline.generate.config import FREE_KEYS, GenerateConfig
from pipeline.generate.protocol import prepare_run
from pipeline.run.rundir import RunDir, config_differences

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_recipes():
    cfg = GenerateConfig()
    assert cfg.method == "self-instruct" and cfg.prompt_count == 8 and cfg.num_machine_instructions == 2
    d = cfg.decoding
    assert (d.instructions.temperature, d.instructions.top_p, d.instructions.presence_penalty) == (
        0.7,
        0.5,
        2.0,
    )
    assert d.instructions.max_tokens == 1024
    assert d.instructions.stop == ["\n\n", "\n16", "16.", "16 ."]
    assert (d.classify.temperature, d.classify.max_tokens, d.classify.stop) == (0.0, 3, ["\n", "Task"])
    assert (d.instances.temperature, d.instances.presence_penalty) == (0.0, 1.5)
    assert (d.instances.max_tokens, d.instances_clf_max_tokens) == (350, 300)
    assert cfg.filters.max_instances == 5 and cfg.dedup.threshold == 0.7
    alpaca = GenerateConfig(method="alpaca")
    assert alpaca.prompt_count == 3
    assert (d.alpaca.temperature, d.alpaca.top_p, d.alpaca.max_tokens) == (1.0, 1.0, 3072)
    assert d.alpaca.stop == ["\n20", "20."]


@pytest.mark.parametrize("name", ["default", "alpaca", "gpu", "server"])
def test_presets_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml", GenerateConfig)
    if name == "default":
        assert (
            cfg.method == "self-instruct" and cfg.teacher.backend == "vllm" and cfg.teacher.model == "bundled"
        )
        # each `make generate` grows the run by about 9 minutes of rounds, on any machine
        assert cfg.until is None and cfg.rounds is None and cfg.time_budget == 540
    if name == "alpaca":
        assert cfg.method == "alpaca"
    if name == "gpu":
        assert cfg.batch_size >= 256 and 1 <= cfg.teacher.engine.tensor_parallel_size <= 8
        assert cfg.teacher.model != "bundled"
    if name == "server":
        assert cfg.teacher.backend == "openai" and cfg.teacher.base_urls == ["http://127.0.0.1:8000/v1"]


def test_flags_override_the_file(tmp_path):
    cfg = load_config(
        CONFIGS / "default.yaml",
        GenerateConfig,
        {"method": "alpaca", "batch_size": 3, "teacher.model": "x", "until": None},
    )
    assert (cfg.method, cfg.batch_size, cfg.teacher.model) == ("alpaca", 3, "x")
    assert cfg.teacher.backend == "vllm"  # untouched keys keep the file's value


def test_bad_config_names_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "method: self-instruct\nbatch_size: lots\nteacher:\n  backend: vllm\n  modle: bundled\n"
        "decoding:\n  instructions:\n    top_p: 0\n"
    )
    with pytest.raises(InputFileError) as err:
        load_config(bad, GenerateConfig)
    text = str(err.value)
    assert 'line 2, field "batch_size"' in text
    assert 'line 5, field "teacher.modle"' in text
    assert 'line 8, field "decoding.instructions.top_p"' in text
    with pytest.raises(InputFileError, match="must exceed num_machine_instructions"):
        load_config(None, GenerateConfig, {"num_prompt_instructions": 2})


def test_generate_cli_errors_exit_2(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: 2\nbogus_key: 1\n")
    result = runner.invoke(main, ["generate", "--config", str(bad), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and 'line 2, field "bogus_key"' in result.output
    result = runner.invoke(main, ["generate", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "no such config file" in result.output
    result = runner.invoke(
        main,
        ["generate", "--seeds", str(tmp_path / "none.jsonl"), "--run-dir", str(tmp_path / "r"), "--quiet"],
    )
    assert result.exit_code == 2 and "no such file" in result.output
    few = tmp_path / "few.jsonl"
    few.write_text(
        '{"id": "a", "name": "a", "instruction": "Say hi to me now.", "is_classification": false, '
        '"instances": [{"input": "", "output": "hi"}]}\n'
    )
    result = runner.invoke(
        main, ["generate", "--seeds", str(few), "--run-dir", str(tmp_path / "r"), "--quiet"]
    )
    assert result.exit_code == 2 and "1 seed tasks, but every prompt shows 8" in result.output
    result = runner.invoke(main, ["generate", "--rounds", "0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_time_budget_reads_durations_and_may_change_between_runs(tmp_path):
    for text, seconds in [
        ("600", 600),
        ("90s", 90),
        ("10m", 600),
        ("1h30m", 5400),
        ("1.5m", 90),
        ("0.5", 0.5),
    ]:
        assert GenerateConfig(time_budget=text).time_budget == seconds
    assert GenerateConfig(time_budget=120).time_budget == 120
    assert load_config(CONFIGS / "default.yaml", GenerateConfig, {"time_budget": "none"}).time_budget is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 4\ntime_budget: 10 minutes\n")
    with pytest.raises(InputFileError, match=r'line 2, field "time_budget": .*not a duration'):
        load_config(bad, GenerateConfig)
    with pytest.raises(InputFileError, match='field "time_budget"'):
        load_config(None, GenerateConfig, {"time_budget": "0"})
    result = CliRunner().invoke(main, ["generate", "--time-budget", "soon", "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and 'command line, field "time_budget"' in result.output
    base = GenerateConfig().model_dump(mode="json")
    assert config_differences(base, GenerateConfig(time_budget="5m").model_dump(mode="json"), FREE_KEYS) == []


def test_what_a_rerun_may_change():
    base = GenerateConfig().model_dump(mode="json")
    served = GenerateConfig(teacher={"backend": "openai"}).model_dump(mode="json")
    free = GenerateConfig(
        rounds=9,
        until=100,
        teacher={
            "backend": "openai",
            "base_urls": ["http://h:1/v1"],
            "concurrency": 3,
            "engine": {"tensor_parallel_size": 2},
        },
    ).model_dump(mode="json")
    assert config_differences(served, free, FREE_KEYS) == []
    changed = GenerateConfig(
        method="alpaca",
        batch_size=3,
        seed=1,
        teacher={"model": "other"},
        dedup={"threshold": 0.5},
        filters={"min_words": 2},
        prompt_style="chat",
        decoding={"instructions": {"temperature": 0.2}},
        templates={"classify": "mine.txt"},
    ).model_dump(mode="json")
    diffs = config_differences(base, changed, FREE_KEYS)
    keys = {d.split(":")[0] for d in diffs}
    assert keys == {
        "method",
        "batch_size",
        "seed",
        "teacher.model",
        "dedup.threshold",
        "filters.min_words",
        "prompt_style",
        "decoding.instructions.temperature",
        "templates.classify",
    }
    assert "batch_size: 8 -> 3" in diffs
    partial = GenerateConfig(decoding={"instructions": {"temperature": 0.2}}).decoding.instructions
    assert (partial.temperature, partial.top_p, partial.max_tokens) == (0.2, 0.5, 1024)


def test_a_run_directory_refuses_another_config(tmp_path):
    run = RunDir(tmp_path / "run")
    state = prepare_run(GenerateConfig(), run)[0]
    state.rounds_done = 1
    run.write_state(state)
    prepare_run(GenerateConfig(rounds=5), run)  # run length may change
    with pytest.raises(UserError) as err:
        prepare_run(GenerateConfig(batch_size=2, method="alpaca"), run)
    assert "batch_size: 8 -> 2" in str(err.value) and "method: 'self-instruct' -> 'alpaca'" in str(err.value)
    prepare_run(GenerateConfig(batch_size=2), run, force=True)
    assert "batch_size: 2" in run.config_path.read_text()
