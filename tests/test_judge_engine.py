"""The judge on the bundled model: answers forced into the JSON schema in-process (vLLM structured
outputs) and through `selfinstruct serve` (response_format over HTTP). Small on purpose: two tasks."""

from __future__ import annotations

import pytest
from judge_fakes import make_run, make_task

from pipeline.judge.config import JudgeConfig
from pipeline.judge.runner import judge_run
from pipeline.run.judgments import UNFIT_JUDGE_NOTE, judgment_figures, read_judgments
from pipeline.run.schemas import Instance
from pipeline.teachers import TeacherConfig

pytestmark = pytest.mark.engine

TASKS = [
    make_task(1, 0, "Add the two numbers.", [Instance(input="2 and 3", output="5")]),
    make_task(1, 1, "Name the capital city of the country.", [Instance(input="France", output="Berlin")]),
]


def check_schema_answers(run) -> None:
    judgments = read_judgments(run)
    assert sorted(judgments) == ["r0001-0000", "r0001-0001"]
    for judgment in judgments.values():
        # Forced into the schema, the reply is strict JSON with every field in range.
        assert judgment.status == "scored", judgment
        assert judgment.parsed == "json" and 1 <= judgment.score <= 5
    # The bundled model's verdicts, in-process or served, come with the warning that it cannot judge.
    assert judgment_figures(TASKS, judgments)["caution"] == UNFIT_JUDGE_NOTE


def test_schema_forced_in_process(vllm_teacher, tmp_path):
    run = make_run(tmp_path / "run", TASKS)
    config = JudgeConfig(teacher=TeacherConfig(backend="vllm", model="bundled"))
    outcome = judge_run(run, config, teacher=vllm_teacher)
    assert outcome.asked == 2 and outcome.judge.backend == "vllm"
    check_schema_answers(run)
    again = judge_run(run, config, teacher=vllm_teacher)
    assert again.asked == 0


def test_schema_forced_through_serve(vllm_server, tmp_path):
    run = make_run(tmp_path / "run", TASKS)
    config = JudgeConfig(teacher=TeacherConfig(backend="openai", model="bundled", base_urls=[vllm_server]))
    outcome = judge_run(run, config)
    assert outcome.asked == 2 and outcome.judge.backend == "openai"
    check_schema_answers(run)
