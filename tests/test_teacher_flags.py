"""The flags that pick a teacher: one spelling for generate, judge and evaluate, reaching the config."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from judge_fakes import FakeJudge, make_run, make_task, verdict

from pipeline.cli import main
from pipeline.core.yamlconfig import load_config
from pipeline.generate.config import GenerateConfig
from pipeline.run.judgments import read_judgments
from pipeline.teachers.flags import BACKENDS, TeacherFlags, teacher_flags
from tuning.config import TrainConfig


def flags_command(prefix: str = "") -> click.Command:
    @click.command()
    @click.option("--other", default="x")
    @teacher_flags("judge", prefix=prefix)
    def command(other: str, **given: TeacherFlags) -> None:
        (name, flags), *rest = given.items()
        assert not rest
        click.echo(f"{other} {name} {flags.backend} {flags.model} {','.join(flags.base_urls)}")

    return command


def test_the_flags_arrive_as_one_keyword_and_unset_ones_are_none():
    result = CliRunner().invoke(
        flags_command(),
        ["--teacher", "openai", "--model", "m", "--base-url", "http://a/v1", "--base-url", "b"],
    )
    assert result.exit_code == 0, result.output
    assert result.output == "x teacher openai m http://a/v1,b\n"
    result = CliRunner().invoke(flags_command("judge-"), ["--judge-model", "big", "--other", "y"])
    assert result.output == "y judge_teacher None big \n"
    assert TeacherFlags().overrides("teacher") == {
        "teacher.backend": None,
        "teacher.model": None,
        "teacher.base_urls": None,
    }


def test_the_backends_are_the_configs_and_a_wrong_one_is_refused():
    assert set(BACKENDS) == {"vllm", "openai"}
    result = CliRunner().invoke(flags_command("judge-"), ["--judge-teacher", "tgi"])
    assert result.exit_code == 2 and "--judge-teacher" in result.output
    for command in (["generate"], ["judge", "RUN"], ["evaluate"]):
        flag = "--judge-teacher" if command == ["evaluate"] else "--teacher"
        result = CliRunner().invoke(main, [*command, flag, "tgi"])
        assert result.exit_code == 2 and f"Invalid value for '{flag}'" in result.output, command


@pytest.mark.parametrize(
    ("schema", "key"), [(GenerateConfig, "teacher"), (TrainConfig, "evaluate.judge.teacher")]
)
def test_overrides_land_on_the_teacher_they_name(schema, key):
    flags = TeacherFlags("openai", "judge-70b", ("http://h:8000/v1",))
    config = load_config(None, schema, flags.overrides(key))
    teacher = config
    for part in key.split("."):
        teacher = getattr(teacher, part)
    assert (teacher.backend, teacher.model, teacher.base_urls) == (
        "openai",
        "judge-70b",
        ["http://h:8000/v1"],
    )


def test_judge_takes_its_model_from_the_flags(tmp_path, monkeypatch):
    """`selfinstruct judge RUN --teacher openai --model M --base-url URL`, no config: M at URL judges."""
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    run = make_run(tmp_path / "run", [make_task(1, k) for k in range(3)])
    judge = FakeJudge(lambda body: (200, verdict(5)), model="named-on-the-command-line")
    try:
        result = CliRunner().invoke(
            main,
            ["judge", str(run), "--teacher", "openai", "--model", "named-on-the-command-line"]
            + ["--base-url", judge.url, "--quiet"],
        )
        assert result.exit_code == 0, result.output
        assert len(judge.received) == 3
        assert {body["model"] for body in judge.received} == {"named-on-the-command-line"}
        verdicts = read_judgments(run)
        assert {j.judge.model for j in verdicts.values()} == {"named-on-the-command-line"}
        assert all(j.score == 5 for j in verdicts.values())
    finally:
        judge.close()
