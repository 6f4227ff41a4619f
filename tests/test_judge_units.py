"""The judge's parts on their own: reading replies, the templates and their version, kappa, the bootstrap."""

from __future__ import annotations

import json

import pytest

from pipeline.core.errors import UserError
from pipeline.judge.config import JudgeConfig
from pipeline.judge.parse import (
    Preference,
    TaskVerdict,
    Unusable,
    find_object,
    read_preference,
    read_task_verdict,
)
from pipeline.judge.prompts import CLIPPED, load_template, task_request
from pipeline.judge.stats import bootstrap_ci, cohen_kappa
from pipeline.run.schemas import Instance, MachineTask, TeacherIdentity

FULL = {
    "reason": "Clear task.",
    "valid_instruction": True,
    "appropriate_input": False,
    "correct_output": True,
    "score": 4,
}


def test_strict_json_is_read_as_json():
    verdict = read_task_verdict(json.dumps(FULL), "stop")
    assert verdict == TaskVerdict(True, False, True, 4, "Clear task.", "json")


@pytest.mark.parametrize(
    "text",
    [
        "Here you go:\n" + json.dumps(FULL) + "\nThanks.",
        "```json\n" + json.dumps(FULL) + "\n```",
        json.dumps(
            {**FULL, "valid_instruction": "Yes", "appropriate_input": "no.", "correct_output": "TRUE"}
        ),
        json.dumps({**FULL, "score": "4/5"}),
        json.dumps({**FULL, "score": 4.0}),
        json.dumps({k.upper(): v for k, v in FULL.items()}),
        json.dumps({**FULL, "extra": 1}),
    ],
)
def test_tolerant_reading(text):
    verdict = read_task_verdict(text, "stop")
    assert isinstance(verdict, TaskVerdict) and verdict.parsed == "tolerant"
    assert (verdict.valid_instruction, verdict.appropriate_input, verdict.correct_output, verdict.score) == (
        True,
        False,
        True,
        4,
    )


@pytest.mark.parametrize(
    ("text", "finish", "code"),
    [
        ('{"reason": "x", "valid_instr', "length", "truncated"),
        ("not json at all", "stop", "not_json"),
        ("   ", "stop", "empty_reply"),
        (json.dumps({k: v for k, v in FULL.items() if k != "reason"}), "stop", "missing_fields"),
        (json.dumps({**FULL, "score": 6}), "stop", "score_out_of_range"),
        (json.dumps({**FULL, "score": -1}), "stop", "score_out_of_range"),
        (json.dumps({**FULL, "score": 3.5}), "stop", "bad_field"),
        (json.dumps({**FULL, "score": True}), "stop", "bad_field"),
        (json.dumps({**FULL, "score": "four"}), "stop", "bad_field"),
        (json.dumps({**FULL, "correct_output": "probably"}), "stop", "bad_field"),
        (json.dumps({**FULL, "correct_output": 1}), "stop", "bad_field"),
        (json.dumps({**FULL, "reason": ["a"]}), "stop", "bad_field"),
        ("[1, 2, 3]", "stop", "not_json"),
    ],
)
def test_unusable_replies_are_never_guessed(text, finish, code):
    verdict = read_task_verdict(text, finish)
    assert isinstance(verdict, Unusable) and verdict.code == code


def test_find_object_skips_braces_that_are_not_json():
    found = find_object('The set {a, b} is small. {"winner": "A", "reason": "r"}')
    assert found == ({"winner": "A", "reason": "r"}, "tolerant")


@pytest.mark.parametrize(
    ("text", "winner", "parsed"),
    [
        ('{"reason": "r", "winner": "A"}', "A", "json"),
        ('{"reason": "r", "winner": "tie"}', "tie", "json"),
        ('Verdict: {"reason": "r", "winner": "Answer B"}', "B", "tolerant"),
        ('{"reason": "r", "winner": "b."}', "B", "tolerant"),
    ],
)
def test_preferences(text, winner, parsed):
    assert read_preference(text) == Preference(winner, "r", parsed)


def test_unusable_preference():
    assert read_preference('{"reason": "r", "winner": "both"}').code == "bad_field"
    assert read_preference('{"winner": "A"}').code == "missing_fields"


def task(instances: list[Instance]) -> MachineTask:
    return MachineTask(
        id="r0001-0000",
        instruction="Name the capital.",
        instances=instances,
        is_classification=False,
        round=1,
        method="self-instruct",
        teacher=TeacherIdentity(backend="vllm", model="m"),
    )


def test_task_request_shows_every_instance_clipped_with_the_schema():
    config = JudgeConfig(max_field_chars=60)
    request = task_request(
        load_template("task"),
        task([Instance(input="France", output="Paris"), Instance(input="", output="x" * 100)]),
        config,
    )
    text = request.messages[0]["content"]
    assert "Instruction: Name the capital.\n" in text
    assert "Instance 1\nInput: France\nOutput: Paris" in text
    assert "Instance 2\nInput: (none)\nOutput: " + "x" * 60 + CLIPPED in text
    assert request.params.json_schema["required"][-1] == "score"
    assert request.params.temperature == 0.0 and request.params.seed == 0


def test_template_version_follows_the_text_and_bad_templates_are_errors(tmp_path):
    bundled = load_template("task")
    mine = tmp_path / "judge.txt"
    mine.write_text(bundled.text.replace("one short sentence", "one sentence"))
    assert load_template("task", mine).version != bundled.version
    assert load_template("task").version == bundled.version
    mine.write_text("Judge $instruction please")
    with pytest.raises(UserError, match=r"missing instances"):
        load_template("task", mine)
    mine.write_text("$instruction $instances $oops")
    with pytest.raises(UserError, match=r"unknown oops"):
        load_template("task", mine)
    with pytest.raises(UserError, match="no such judge template"):
        load_template("pairwise", tmp_path / "nope.txt")


def test_cohen_kappa_known_values():
    # 50 items: both yes 20, yes/no 5, no/yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None  # chance agreement is total: undefined
    assert cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        cohen_kappa([1], [1, 0])


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = [0.0, 0.5, 1.0, 1.0, 0.5, 0.0, 1.0, 0.5] * 5
    low, high = bootstrap_ci(values, seed=3)
    assert low < sum(values) / len(values) < high and low >= 0.0 and high <= 1.0
    assert bootstrap_ci(values, seed=3) == (low, high)
    assert bootstrap_ci([0.5] * 7) == (0.5, 0.5)
    assert bootstrap_ci([]) is None


def test_the_round_judge_shares_the_generation_engine_when_it_is_the_same_model(tmp_path):
    from pipeline.judge.hook import _shared, shares_engine
    from pipeline.teachers import CachedTeacher, TeacherConfig
    from pipeline.teachers.vllm_local import VLLMTeacher

    bundled = TeacherConfig(backend="vllm", model="bundled")
    assert shares_engine(bundled, TeacherConfig(backend="vllm", model="bundled"))
    assert not shares_engine(
        bundled, TeacherConfig(backend="openai", model="bundled", base_urls=["http://x/v1"])
    )
    assert not shares_engine(bundled, TeacherConfig(backend="vllm", model=str(tmp_path)))
    engine = object()  # stands in for the loaded vllm.LLM: nothing is loaded by sharing it
    generation = CachedTeacher(VLLMTeacher(bundled, llm=engine), tmp_path)
    judge = _shared(generation, bundled)
    assert isinstance(judge, VLLMTeacher) and judge.llm is engine
    assert judge.usage is not generation.usage  # the judge's tokens stay out of the generation's figures
