"""Pairwise judging of base and student answers: both orders, position bias cancelled, the win rate."""

from __future__ import annotations

import json
import re

import pytest
from judge_fakes import FakeJudge, prompt_of
from rich.console import Console

from pipeline.core.model import BUNDLED_NAME
from pipeline.judge.config import JudgeConfig
from pipeline.judge.pairwise import NO_JUDGE_NOTE, compare
from pipeline.run.judgments import UNFIT_JUDGE_NOTE
from pipeline.teachers import TeacherConfig, make_teacher
from tuning.evaluate import results_table


def rows(n: int) -> list[dict]:
    return [
        {
            "id": f"t{k}",
            "instruction": f"Question {k}?",
            "input": "",
            "base": {"answer": f"base answer {k}"},
            "student": {"answer": f"student answer {k}"},
        }
        for k in range(n)
    ]


def answers(body: dict) -> tuple[str, str]:
    match = re.search(r"Answer A:\n(.*)\n\nAnswer B:\n(.*)\n", prompt_of(body))
    assert match, prompt_of(body)
    return match.group(1), match.group(2)


def run_compare(answer, n: int = 6, model: str = "fake-judge") -> tuple[dict, list[dict], FakeJudge]:
    server = FakeJudge(answer)
    config = JudgeConfig(
        teacher=TeacherConfig(backend="openai", model=model, base_urls=[server.url], max_retries=0)
    )
    teacher = make_teacher(config.teacher)
    data = rows(n)
    try:
        return compare(data, teacher, config), data, server
    finally:
        teacher.close()
        server.close()


def test_a_judge_that_always_prefers_the_first_answer_gives_ties_not_wins():
    summary, data, server = run_compare(lambda body: (200, json.dumps({"reason": "first", "winner": "A"})))
    assert len(server.received) == 12  # every task in both orders
    assert [answers(b)[0].split()[0] for b in server.received].count("student") == 6
    assert summary["win_rate"] == 0.5 and summary["ci95"] == [0.5, 0.5]
    assert (summary["win"], summary["tie"], summary["loss"]) == (0, 6, 0)
    assert summary["single_verdicts"] == {"win": 6, "tie": 0, "loss": 6}
    assert summary["first_answer_preferred"] == 1.0
    assert data[0]["judge"]["base_first"]["winner"] == "A" and data[0]["judge"]["outcome"] == "tie"


def test_a_judge_that_prefers_the_student_wherever_it_stands():
    def answer(body: dict) -> tuple[int, str]:
        first, _ = answers(body)
        return 200, json.dumps({"reason": "student", "winner": "A" if first.startswith("student") else "B"})

    summary, _, _ = run_compare(answer)
    assert summary["win_rate"] == 1.0 and (summary["win"], summary["tie"], summary["loss"]) == (6, 0, 0)
    assert summary["first_answer_preferred"] == 0.5


def test_mixed_verdicts_and_unusable_replies():
    def answer(body: dict) -> tuple[int, str]:
        first, second = answers(body)
        k = int(first.split()[-1])
        student_first = first.startswith("student")
        if k == 0:  # the student wins in one order, ties in the other: a win (3/4)
            return 200, json.dumps({"reason": "r", "winner": "A" if student_first else "tie"})
        if k == 1:  # the base wins both: a loss
            return 200, json.dumps({"reason": "r", "winner": "B" if student_first else "A"})
        if k == 2:  # unreadable in one order: the task is not counted
            return 200, "no idea" if student_first else json.dumps({"reason": "r", "winner": "A"})
        return 200, json.dumps({"reason": "r", "winner": "tie"})

    summary, data, _ = run_compare(answer, n=4)
    assert (summary["win"], summary["tie"], summary["loss"], summary["judged"]) == (1, 1, 1, 3)
    assert summary["win_rate"] == pytest.approx((0.75 + 0.0 + 0.5) / 3)
    assert summary["unusable_verdicts"] == {"not_json": 1}
    assert data[0]["judge"]["student_points"] == 0.75 and "outcome" not in data[2]["judge"]


def table_text(report: dict) -> str:
    console = Console(width=200, record=True)
    console.print(results_table(report))
    return console.export_text()


def test_the_table_leads_with_the_win_rate_or_says_what_it_does_not_measure():
    models = {"base": {"rouge_l": 0.1}, "student": {"rouge_l": 0.2}}
    report = {"n_tasks": 6, "prompt_format": "chat", "models": models, "pairwise": None}
    plain = table_text(report)
    assert " ".join(NO_JUDGE_NOTE.split()) in " ".join(plain.split())
    summary, _, _ = run_compare(lambda body: (200, json.dumps({"reason": "first", "winner": "A"})))
    judged = table_text({**report, "pairwise": summary})
    rows_shown = [line for line in judged.splitlines() if line.startswith("│")]
    assert "student win rate" in rows_shown[0] and "50.0% [50.0%, 50.0%]" in rows_shown[0]
    assert "0 / 6 / 0" in judged and NO_JUDGE_NOTE.split(":")[0] not in judged
    assert summary["caution"] is None and "cannot judge" not in judged


def test_a_bundled_judge_comes_with_its_caution():
    """The bundled 135M model served over HTTP is still the bundled model: its verdicts are flagged."""
    summary, _, _ = run_compare(
        lambda body: (200, json.dumps({"reason": "first", "winner": "A"})), model="bundled"
    )
    assert summary["judge"]["model"] == BUNDLED_NAME and summary["caution"] == UNFIT_JUDGE_NOTE
    report = {
        "n_tasks": 6,
        "prompt_format": "chat",
        "models": {"base": {}, "student": {}},
        "pairwise": summary,
    }
    assert " ".join(UNFIT_JUDGE_NOTE.split()) in " ".join(table_text(report).split())
