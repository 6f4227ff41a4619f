"""`selfinstruct judge` against a real local HTTP judge: hostile replies, kills, grown runs, other judges,
and judging inside `generate`. Everything but the judge model is our real code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from judge_fakes import (
    FakeJudge,
    body_key,
    grow_run,
    instruction_of,
    judge_yaml,
    make_run,
    make_task,
    read_lines,
    verdict,
)

from pipeline.cli import main
from pipeline.judge.config import JudgeConfig
from pipeline.judge.prompts import TASK_SCHEMA
from pipeline.judge.runner import judge_new_tasks, judge_run
from pipeline.run.judgments import read_judgments
from pipeline.teachers import make_teacher

REPO = Path(__file__).resolve().parents[1]

HOSTILE = {
    "good": (200, verdict(4)),
    "prose": (200, "Sure! My verdict: " + verdict(3, correct=False) + " Hope this helps."),
    "fenced": (
        200,
        '```json\n{"reason": "fine", "valid_instruction": "yes", "appropriate_input": "Yes", '
        '"correct_output": "no", "score": "2/5"}\n```',
    ),
    "badjson": (200, '{"reason": "cut", "valid_instruction": tr'),
    "missing": (200, json.dumps({"reason": "r", "valid_instruction": True, "appropriate_input": True})),
    "range": (200, verdict(9)),
    "zero": (200, verdict(0)),
    "maybe": (200, verdict(3).replace('"valid_instruction": true', '"valid_instruction": "maybe"')),
    "server500": (500, "the judge fell over"),
    "prose_only": (200, "I think this task is fine and the output is correct."),
    "empty": (200, ""),
}


def hostile_answer(body: dict) -> tuple[int, str]:
    return HOSTILE[instruction_of(body).split()[0]]


@pytest.fixture()
def hostile(tmp_path):
    server = FakeJudge(hostile_answer)
    tasks = [make_task(1, k, instruction=f"{case} task number {k}.") for k, case in enumerate(HOSTILE)]
    run = make_run(tmp_path / "run", tasks)
    config = judge_yaml(tmp_path / "judge.yaml", server.url, teacher={"concurrency": 1})
    yield server, run, config
    server.close()


def test_hostile_judge_never_crashes_and_leaves_tasks_unscored_with_reasons(hostile, monkeypatch):
    server, run, config = hostile
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    result = CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["asked"] == len(HOSTILE)
    assert out["counts"] == {"scored": 3, "unscored": 7, "failed": 1}

    current = {j.task_id: j for j in read_judgments(run).values()}
    by_case = {case: current[f"r0001-{k:04d}"] for k, case in enumerate(HOSTILE)}
    good, prose, fenced = by_case["good"], by_case["prose"], by_case["fenced"]
    assert (good.status, good.score, good.parsed, good.all_valid) == ("scored", 4, "json", True)
    assert (prose.score, prose.correct_output, prose.parsed) == (3, False, "tolerant")
    assert (fenced.score, fenced.valid_instruction, fenced.correct_output, fenced.parsed) == (
        2,
        True,
        False,
        "tolerant",
    )
    expected = {
        "badjson": "not_json",
        "missing": "missing_fields: correct_output, score",
        "range": "score_out_of_range: score 9",
        "zero": "score_out_of_range: score 0",
        "maybe": "bad_field: valid_instruction",
        "prose_only": "not_json",
        "empty": "empty_reply",
    }
    for case, start in expected.items():
        judgment = by_case[case]
        assert (
            judgment.status == "unscored" and judgment.score is None and judgment.reason.startswith(start)
        ), case
    assert by_case["badjson"].reply == HOSTILE["badjson"][1]
    failed = by_case["server500"]
    assert failed.status == "failed" and "HTTP 500" in failed.reason and failed.score is None

    # The JSON schema went over HTTP as response_format; every answered request was answered once.
    assert server.received[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": TASK_SCHEMA},
    }
    # Answers received are never asked again; only a request in flight when the failing one gave up
    # (the teacher then cancels the batch, so its answer never arrives) is asked once more: with
    # concurrency 1, at most one.
    repeats = sum(n - 1 for n in Counter(body_key(b) for b in server.answered).values())
    assert repeats <= 1

    # A rerun asks again only for the failed request: unusable replies are final, not retried.
    before = len(server.received)
    again = CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--json", "--quiet"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["asked"] == 1
    assert {instruction_of(b).split()[0] for b in server.received[before:]} == {"server500"}
    lines = read_lines(run / "judgments.jsonl")
    assert Counter(line["task_id"] for line in lines)[failed.task_id] == 2 and len(lines) == len(HOSTILE) + 1


def test_killed_judge_resumes_without_asking_twice(tmp_path):
    release = threading.Event()
    count = {"n": 0}
    lock = threading.Lock()

    def answer(body: dict) -> tuple[int, str]:
        with lock:
            count["n"] += 1
            number = count["n"]
        if number == 6 and not release.is_set():
            release.wait(60)  # the sixth request hangs until the judge has been killed
        return 200, verdict(4)

    server = FakeJudge(answer)
    try:
        run = make_run(tmp_path / "run", [make_task(1, k) for k in range(10)])
        config = judge_yaml(tmp_path / "judge.yaml", server.url, batch_size=4, teacher={"concurrency": 1})
        env = {**os.environ, "PYTHONPATH": str(REPO), "SI_FAKE_JUDGE_KEY": "k"}
        command = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "judge",
            str(run),
            "--config",
            str(config),
            "--quiet",
        ]
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cache = run / "cache" / "judge" / "teacher.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            cache.exists() and len(cache.read_text().splitlines()) >= 5
        ):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        while time.monotonic() < deadline and len(server.received) < 6:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        release.set()
        first_answered = [body_key(b) for b in server.answered]
        assert len(first_answered) == 5
        assert len(read_lines(run / "judgments.jsonl")) == 4  # the first batch only

        before = len(server.received)
        result = subprocess.run(
            command + ["--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        resumed = [body_key(b) for b in server.received[before:]]
        assert len(resumed) == 5 and not set(resumed) & set(first_answered)
        out = json.loads(result.stdout)
        assert out["asked"] == 6 and out["usage"]["cache_hits"] == 1  # the 5th answer came from the cache
        lines = read_lines(run / "judgments.jsonl")
        assert sorted(line["task_id"] for line in lines) == [f"r0001-{k:04d}" for k in range(10)]
        assert all(line["status"] == "scored" for line in lines)
    finally:
        release.set()
        server.close()


def test_grown_run_scores_only_new_tasks_and_another_judge_rescores(tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    server = FakeJudge(lambda body: (200, verdict(5 if body["model"] == "strong-judge" else 2)))
    try:
        run = make_run(tmp_path / "run", [make_task(1, k) for k in range(3)])
        config = JudgeConfig.model_validate(
            yaml.safe_load(judge_yaml(tmp_path / "j.yaml", server.url).read_text())["judge"]
        )
        assert judge_run(run, config).asked == 3
        assert judge_run(run, config).asked == 0  # nothing new: nothing asked
        grow_run(run, [make_task(2, k) for k in range(2)])
        assert judge_run(run, config).asked == 2 and len(server.received) == 5

        strong = config.model_copy(
            update={"teacher": config.teacher.model_copy(update={"model": "strong-judge"})}
        )
        outcome = judge_run(run, strong)
        assert outcome.asked == 5 and outcome.judge.model == "strong-judge"
        current = read_judgments(run)
        assert {j.score for j in current.values()} == {5} and {j.judge.model for j in current.values()} == {
            "strong-judge"
        }

        # generate's per-round hook fills in new tasks only: it never overwrites the stronger verdicts.
        grow_run(run, [make_task(3, 0)])
        teacher = make_teacher(config.teacher)
        assert judge_new_tasks(run, config, teacher).asked == 1
        teacher.close()
        current = read_judgments(run)
        assert current["r0003-0000"].score == 2 and current["r0001-0000"].judge.model == "strong-judge"
        assert len(server.received) == 11
    finally:
        server.close()


def test_generate_judges_each_round_as_it_commits(tmp_path, monkeypatch):
    from openai_fakes import judged_generate_yaml
    from test_rounds import FakeTeacher  # the fake generation teacher

    monkeypatch.setenv("SI_FAKE_KEY", "k")
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    teacher = FakeTeacher()
    threading.Thread(target=teacher.serve_forever, daemon=True).start()
    judged_after_round: list[int] = []

    def answer(body: dict) -> tuple[int, str]:
        state = json.loads((tmp_path / "run" / "state.json").read_text())
        judged_after_round.append(state["rounds_done"])
        return 200, verdict(4)

    judge = FakeJudge(answer)
    try:
        path = judged_generate_yaml(
            tmp_path,
            teacher.url,
            {"model": "fake-judge", "base_urls": [judge.url], "api_key_env": "SI_FAKE_JUDGE_KEY"},
        )
        result = CliRunner().invoke(
            main, ["generate", "--config", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]
        )
        assert result.exit_code == 0, result.output
        tasks = read_lines(tmp_path / "run" / "machine_tasks.jsonl")
        current = read_judgments(tmp_path / "run")
        assert tasks and sorted(current) == sorted(t["id"] for t in tasks)
        assert all(j.status == "scored" for j in current.values())
        # One request a task, and one more about the sampled instance of a task with several.
        asks = {t["id"]: 1 + (len(t["instances"]) > 1) for t in tasks}
        assert len(judge.received) == sum(asks.values())
        # Each task was judged right after the round that kept it was committed.
        per_round = Counter()
        for t in tasks:
            per_round[t["round"]] += asks[t["id"]]
        assert Counter(judged_after_round) == per_round
    finally:
        judge.close()
        teacher.shutdown()
        teacher.server_close()


def test_judge_prints_plain_progress_lines_when_stdout_is_not_a_terminal(hostile, monkeypatch):
    """In a log (CliRunner's stdout is no terminal) the judge prints lines, not a live bar."""
    server, run, config = hostile
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    result = CliRunner().invoke(main, ["judge", str(run), "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("judge: ")]
    total = len(HOSTILE)
    assert lines[0].startswith(f"judge: tasks 0/{total} · 0 from cache · ")
    assert lines[-1].startswith(f"judge: tasks {total}/{total} · ")
    assert all(" tok/s · elapsed " in line and " · eta " in line for line in lines)
    assert "judge ━" not in result.output  # no progress bar drawn into the log
