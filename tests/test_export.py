"""Exports read back in every format, `load_examples` on every input kind, and the error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.core.jsonio import append_jsonl, iter_jsonl
from pipeline.run.export import export_run, load_examples
from pipeline.run.rundir import RunDir, RunState
from pipeline.run.schemas import Instance, MachineTask, SeedTask, TeacherIdentity

TEACHER = TeacherIdentity(backend="vllm", model="smollm2-135m-instruct", fingerprint="f")


def task(round_no: int, k: int, instances: list[Instance], clf: bool = False) -> MachineTask:
    return MachineTask(
        id=f"r{round_no:04d}-{k:04d}",
        instruction=f"Task {round_no}.{k}: describe item {k} ",
        instances=instances,
        is_classification=clf,
        round=round_no,
        method="self-instruct",
        teacher=TEACHER,
    )


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    """A run with 2 committed rounds (12 tasks, 18 instances) and a third round appended but not committed."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(
            SeedTask(
                id=f"s{k}",
                name=f"s{k}",
                instruction=f"Seed instruction {k}",
                is_classification=False,
                instances=[Instance(input="", output=f"seed out {k}"), Instance(input="in", output="out")],
            ).model_dump_json()
            + "\n"
            for k in range(3)
        )
    )
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(f"method: self-instruct\nseeds: {seeds}\n")
    tasks = []
    for round_no in (1, 2):
        for k in range(6):
            instances = [Instance(input=f"input {k}" if k % 2 else "", output=f"output {round_no}.{k}")]
            if k % 3 == 0:
                instances.append(Instance(input="second", output="another output"))
            tasks.append(task(round_no, k, instances, clf=k == 1))
    append_jsonl(run.tasks_path, tasks)
    append_jsonl(run.tasks_path, [task(3, 0, [Instance(output="uncommitted")])])
    run.write_state(RunState(rounds_done=2, kept_total=12))
    return run.path


def test_alpaca_format_is_alpaca_data_json(run_dir, tmp_path):
    info = export_run(run_dir, "alpaca", tmp_path / "out" / "alpaca_data.json")
    data = json.loads((tmp_path / "out" / "alpaca_data.json").read_text())
    assert info == {
        "format": "alpaca",
        "path": str(tmp_path / "out" / "alpaca_data.json"),
        "tasks": 12,
        "examples": 16,
    }
    assert isinstance(data, list) and len(data) == 16
    assert all(list(item) == ["instruction", "input", "output"] for item in data)
    assert data[0] == {"instruction": "Task 1.0: describe item 0", "input": "", "output": "output 1.0"}
    assert not any(item["output"] == "uncommitted" for item in data)  # round 3 was never committed
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_jsonl_and_messages_formats(run_dir, tmp_path):
    export_run(run_dir, "jsonl", tmp_path / "data.jsonl")
    rows = [row for _, row in iter_jsonl(tmp_path / "data.jsonl")]
    assert len(rows) == 16 and {r["task_id"] for r in rows} == {
        f"r000{n}-000{k}" for n in (1, 2) for k in range(6)
    }
    assert sum(r["is_classification"] for r in rows) == 2
    export_run(run_dir, "messages", tmp_path / "messages.jsonl")
    chats = [chat for _, chat in iter_jsonl(tmp_path / "messages.jsonl")]
    assert len(chats) == 16
    by_output = {c["messages"][1]["content"]: c["messages"] for c in chats}
    assert by_output["output 1.1"] == [
        {"role": "user", "content": "Task 1.1: describe item 1\n\ninput 1"},
        {"role": "assistant", "content": "output 1.1"},
    ]
    assert by_output["output 1.0"][0] == {"role": "user", "content": "Task 1.0: describe item 0"}


def test_hf_format_splits_by_task(run_dir, tmp_path):
    from datasets import DatasetDict, load_from_disk

    out = tmp_path / "hf"
    info = export_run(run_dir, "hf", out, test_size=0.25, seed=3)
    data = load_from_disk(str(out))
    assert isinstance(data, DatasetDict) and set(data) == {"train", "test"}
    assert data["train"].column_names == ["instruction", "input", "output", "task_id"]
    assert info["train"] == len(data["train"]) and info["test"] == len(data["test"])
    assert len(data["train"]) + len(data["test"]) == 16
    test_tasks, train_tasks = set(data["test"]["task_id"]), set(data["train"]["task_id"])
    assert len(test_tasks) == 3 and not test_tasks & train_tasks
    # Same seed, same split; exporting again replaces the folder in place.
    export_run(run_dir, "hf", out, test_size=0.25, seed=3)
    assert set(load_from_disk(str(out))["test"]["task_id"]) == test_tasks
    export_run(run_dir, "hf", out, test_size=0.0)
    again = load_from_disk(str(out))
    assert len(again["test"]) == 0 and len(again["train"]) == 16
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hf")] == []


def test_include_seeds(run_dir, tmp_path):
    info = export_run(run_dir, "alpaca", tmp_path / "a.json", include_seeds=True)
    data = json.loads((tmp_path / "a.json").read_text())
    assert info["seed_tasks"] == 3 and len(data) == 16 + 6
    assert data[0] == {"instruction": "Seed instruction 0", "input": "", "output": "seed out 0"}


def test_load_examples_from_every_source(run_dir, tmp_path):
    from_run = load_examples(run_dir)
    assert len(from_run) == 16 and set(from_run[0]) == {"instruction", "input", "output"}
    export_run(run_dir, "alpaca", tmp_path / "a.json")
    assert load_examples(tmp_path / "a.json") == from_run
    export_run(run_dir, "jsonl", tmp_path / "a.jsonl")
    assert load_examples(tmp_path / "a.jsonl") == from_run
    export_run(run_dir, "hf", tmp_path / "hf", test_size=0.25)
    train = load_examples(tmp_path / "hf")
    test = load_examples(tmp_path / "hf", split="test")
    assert len(train) + len(test) == 16 and test
    assert sorted(map(str, load_examples(tmp_path / "hf", split="all"))) == sorted(map(str, from_run))
    with pytest.raises(UserError, match="no split 'validation'"):
        load_examples(tmp_path / "hf", split="validation")


def test_load_examples_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_examples(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('[{"instruction": "a", "output": "b"},\n oops]')
    with pytest.raises(UserError, match="line 2: bad JSON"):
        load_examples(tmp_path / "bad.json")
    (tmp_path / "fields.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n[1]\n')
    with pytest.raises(UserError) as err:
        load_examples(tmp_path / "fields.jsonl")
    assert 'line 2, field "output"' in str(err.value) and "line 3: expected an object" in str(err.value)
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="neither a run directory nor a saved dataset"):
        load_examples(tmp_path / "folder")


def test_export_cli(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["export", str(run_dir), "--format", "alpaca", "-o", str(tmp_path / "x.json")]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 16 examples from 12 tasks" in result.output
    result = runner.invoke(
        main, ["export", str(run_dir), "--format", "hf", "-o", str(tmp_path / "hf"), "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.output)["examples"] == 16


def test_export_cli_errors(run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["export", str(tmp_path / "nope"), "--format", "alpaca", "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "no such run directory" in result.output
    empty = RunDir(tmp_path / "empty")
    empty.path.mkdir()
    empty.write_state(RunState())
    result = runner.invoke(main, ["export", str(empty.path), "--format", "jsonl", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no kept tasks yet" in result.output
    (tmp_path / "plain").mkdir()
    result = runner.invoke(
        main, ["export", str(tmp_path / "plain"), "--format", "jsonl", "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "not a run directory" in result.output
    result = runner.invoke(
        main, ["export", str(run_dir), "--format", "hf", "-o", str(tmp_path / "h"), "--test-size", "1.5"]
    )
    assert result.exit_code == 2 and "--test-size" in result.output
    result = runner.invoke(main, ["export", str(run_dir), "--format", "csv", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "csv" in result.output
    assert not (tmp_path / "x").exists()
