"""A judge that is gone, hung or failing: `judge` says so in one line and stops asking, `generate` warns
once and carries on, and no answer is asked for twice. Real local servers: a closed port, a socket that
accepts and never answers, and `FakeJudge` answering 500s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from click.testing import CliRunner
from judge_fakes import (
    FakeJudge,
    body_key,
    instruction_of,
    judge_yaml,
    make_run,
    make_task,
    prompt_of,
    read_lines,
    verdict,
)
from openai_fakes import SilentServer, closed_port_url, judged_generate_yaml

from pipeline.cli import main
from pipeline.judge.prompts import CLIPPED
from pipeline.run.judgments import read_judgments
from pipeline.run.schemas import Instance

REPO = Path(__file__).resolve().parents[1]
GUARD_S = 600  # a hang guard only (the old code took hours here); nothing is asserted on time


def judge_cli(run: Path, url: str) -> subprocess.CompletedProcess:
    """`selfinstruct judge` with the default settings, pointed at `url`, in a process of its own."""
    command = [sys.executable, "-m", "pipeline.cli", "judge", str(run), "--teacher", "openai"]
    command += ["--model", "some-judge", "--base-url", url, "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=GUARD_S)


def assert_one_line_error(result: subprocess.CompletedProcess, url: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "the judge server is not answering" in lines[0] and url in lines[0]


def test_judge_on_a_closed_port_exits_with_one_line(tmp_path):
    run = make_run(tmp_path / "run", [make_task(1, k) for k in range(3)])
    url = closed_port_url()
    result = judge_cli(run, url)
    assert_one_line_error(result, url)
    assert "cannot connect" in result.stderr
    assert not (run / "judgments.jsonl").exists()


def test_judge_on_a_silent_socket_exits_with_one_line(tmp_path):
    run = make_run(tmp_path / "run", [make_task(1, k) for k in range(3)])
    silent = SilentServer()
    try:
        result = judge_cli(run, silent.url)
    finally:
        silent.close()
    assert_one_line_error(result, silent.url)
    assert "no answer within" in result.stderr
    assert not (run / "judgments.jsonl").exists()


def test_a_judge_failing_every_request_is_dropped_after_three_in_a_row(tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    server = FakeJudge(lambda body: (500, "the engine died"))
    try:
        run = make_run(tmp_path / "run", [make_task(1, k) for k in range(10)])
        config = judge_yaml(tmp_path / "j.yaml", server.url, batch_size=4, teacher={"concurrency": 1})
        result = CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--quiet"])
        assert result.exit_code == 2, result.output
        assert "stopped asking the judge: 3 requests in a row failed" in result.output
        assert "7 task(s) left unjudged" in result.output
        asked = {instruction_of(b) for b in server.received}
        assert asked == {make_task(1, k).instruction for k in range(3)}  # the second batch never went out
        lines = read_lines(run / "judgments.jsonl")
        assert [line["status"] for line in lines] == ["failed"] * 3
    finally:
        server.close()


def test_without_a_cache_a_failed_batch_asks_no_answered_request_again(tmp_path, monkeypatch):
    """`judge --no-cache`: the one-by-one fallback after a failed batch sends only what was not answered."""
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")

    def answer(body: dict) -> tuple[int, str]:
        return (500, "this one always fails") if "bad" in instruction_of(body) else (200, verdict(4))

    server = FakeJudge(answer)
    try:
        tasks = [make_task(1, k, instruction=f"{'bad' if k == 2 else 'good'} task {k}.") for k in range(6)]
        run = make_run(tmp_path / "run", tasks)
        config = judge_yaml(tmp_path / "j.yaml", server.url, teacher={"concurrency": 4})
        args = ["judge", str(run), "--config", str(config), "--no-cache", "--json", "--quiet"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["counts"] == {"scored": 5, "failed": 1}
        answered = Counter(body_key(b) for b in server.answered)
        assert len(answered) == 5 and set(answered.values()) == {1}
    finally:
        server.close()


def test_generate_with_a_dead_judge_warns_once_and_keeps_generating(tmp_path, monkeypatch):
    from test_rounds import FakeTeacher  # the fake generation teacher

    monkeypatch.setenv("SI_FAKE_KEY", "k")
    teacher = FakeTeacher()
    threading.Thread(target=teacher.serve_forever, daemon=True).start()
    try:
        path = judged_generate_yaml(
            tmp_path,
            teacher.url,
            {
                "model": "gone-judge",
                "base_urls": [closed_port_url()],
                "max_retries": 0,  # so that the old code, which had no pre-flight, also ends quickly
            },
        )
        run = tmp_path / "run"
        result = CliRunner().invoke(main, ["generate", "--config", str(path), "--run-dir", str(run)])
        assert result.exit_code == 0, result.output
        output = " ".join(result.output.split())  # the console wraps long lines
        assert output.count("judging stopped for the rest of this run") == 1, result.output
        assert "the judge server is not answering" in output and f"selfinstruct judge {run}" in output
        tasks = read_lines(run / "machine_tasks.jsonl")
        assert {t["round"] for t in tasks} == {1, 2}  # both rounds generated
        assert not (run / "judgments.jsonl").exists()  # left for a later `judge`
    finally:
        teacher.shutdown()
        teacher.server_close()


def test_a_newer_judges_failed_request_keeps_the_older_score(tmp_path, monkeypatch):
    """A judge server that fails on some tasks the second time: the second judge's failures must not
    hide the first judge's scores from `export --min-score`, and `judge` says whose scores count."""
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    asked: Counter[str] = Counter()
    healed = threading.Event()
    flaky = {make_task(1, k).instruction for k in (1, 3)}

    def answer(body: dict) -> tuple[int, str]:
        instruction = instruction_of(body)
        asked[instruction] += 1
        if asked[instruction] >= 2 and instruction in flaky and not healed.is_set():
            return 500, "out of memory"
        return 200, verdict(5 if body["model"] == "first-judge" else 4)

    server = FakeJudge(answer)
    try:
        run = make_run(tmp_path / "run", [make_task(1, k) for k in range(6)])
        first = judge_yaml(tmp_path / "first.yaml", server.url, model="first-judge")
        second = judge_yaml(tmp_path / "second.yaml", server.url, model="second-judge")
        assert CliRunner().invoke(main, ["judge", str(run), "--config", str(first), "--quiet"]).exit_code == 0
        result = CliRunner().invoke(main, ["judge", str(run), "--config", str(second)])
        assert result.exit_code == 0, result.output
        output = " ".join(result.output.split())
        assert "current scores by judge: second-judge" in output and ": 4 tasks · first-judge" in output
        assert "2 failed" in output and "without a score" not in output  # the older scores stand in

        out = tmp_path / "best.jsonl"
        export = ["export", str(run), "--format", "jsonl", "-o", str(out), "--min-score", "4"]
        assert CliRunner().invoke(main, export).exit_code == 0
        assert len(out.read_text().splitlines()) == 6  # none dropped: 4 by the second judge, 2 by the first
        current = {j.task_id: j for j in read_judgments(run).values()}
        assert {current[make_task(1, k).id].judge.model for k in (1, 3)} == {"first-judge"}

        # The second judge asks again only about what failed, and then its scores are current everywhere.
        healed.set()
        before = len(server.received)
        again = CliRunner().invoke(main, ["judge", str(run), "--config", str(second), "--json", "--quiet"])
        assert json.loads(again.stdout)["asked"] == 2 and len(server.received) - before == 2
        assert {j.judge.model for j in read_judgments(run).values()} == {"second-judge"}
    finally:
        server.close()


def test_a_changed_judge_setting_rescores_and_says_why(tmp_path, monkeypatch):
    """Raising `judge.decoding.max_tokens` (to fix truncated verdicts) asks every task again."""
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    server = FakeJudge(lambda body: (200, verdict(3 if body["max_tokens"] == 256 else 5)))
    try:
        run = make_run(tmp_path / "run", [make_task(1, k) for k in range(4)])
        short_config = judge_yaml(tmp_path / "a.yaml", server.url)
        long_config = judge_yaml(tmp_path / "b.yaml", server.url, decoding={"max_tokens": 512})
        args = ["judge", str(run), "--quiet", "--json", "--config"]
        assert json.loads(CliRunner().invoke(main, [*args, str(short_config)]).stdout)["asked"] == 4
        assert json.loads(CliRunner().invoke(main, [*args, str(short_config)]).stdout)["asked"] == 0
        result = CliRunner().invoke(main, ["judge", str(run), "--config", str(long_config)])
        assert result.exit_code == 0, result.output
        assert "asked because (tasks): 4 judge.decoding.max_tokens: 256 -> 512" in " ".join(
            result.output.split()
        )
        assert {j.score for j in read_judgments(run).values()} == {5}
        assert {j.settings["decoding"]["max_tokens"] for j in read_judgments(run).values()} == {512}
        # The seed and the field limit are part of the version too.
        seeded = judge_yaml(tmp_path / "c.yaml", server.url, decoding={"max_tokens": 512}, seed=7)
        out = json.loads(CliRunner().invoke(main, [*args, str(seeded)]).stdout)
        assert out["asked"] == 4 and out["reasons"] == {"judge.seed: 0 -> 7": 4}
    finally:
        server.close()


def test_the_shared_engine_judge_records_the_engines_dtype():
    """generate's judge on the generation engine computes in that engine's dtype, whatever its own
    config says; its identity (and so its verdicts' version) must say so."""
    from pipeline.judge.hook import _shared
    from pipeline.teachers.config import EngineOptions, TeacherConfig
    from pipeline.teachers.vllm_local import VLLMTeacher

    engine_in_use = object()  # the shared `vllm.LLM`: never called here, only handed over
    generation = VLLMTeacher(TeacherConfig(engine=EngineOptions(dtype="float32")), llm=engine_in_use)
    judge = _shared(generation, TeacherConfig(engine=EngineOptions(dtype="bfloat16")))
    assert judge is not None and judge.llm is engine_in_use
    assert judge.identity.dtype == generation.identity.dtype == "float32"


ESSAY = " ".join(
    f"Sentence {k} of a long, correct essay about rivers, complete and on topic." for k in range(60)
)


def rubric_following_answer(full_output: str):
    """A judge that does what the bundled rubric says: an output cut off is not correct, unless the
    rubric says the cut was made by the pipeline and is not a defect."""

    def answer(body: dict) -> tuple[int, str]:
        prompt = body["messages"][-1]["content"]
        shown = prompt.split("\nOutput: ", 1)[1].split("\n\n", 1)[0]
        excused = "do not count that cut as a defect" in prompt and shown.endswith(CLIPPED)
        whole = shown == full_output
        return 200, verdict(5 if whole or excused else 2, correct=whole or excused)

    return answer


def test_a_long_correct_output_is_shown_whole_and_not_penalised(tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    server = FakeJudge(rubric_following_answer(ESSAY))
    try:
        run = make_run(tmp_path / "run", [make_task(1, 0, instances=[Instance(input="", output=ESSAY)])])
        config = judge_yaml(tmp_path / "j.yaml", server.url)
        assert (
            CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--quiet"]).exit_code == 0
        )
        assert ESSAY in server.received[0]["messages"][-1]["content"]  # 4,500 characters, not clipped
        (judgment,) = read_judgments(run).values()
        assert judgment.correct_output is True and judgment.score == 5
        assert judgment.settings["context_tokens"] == 8192  # what a server that does not say is assumed
    finally:
        server.close()


def test_where_the_context_forces_a_clip_the_rubric_excuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    long_output = ESSAY * 3
    server = FakeJudge(rubric_following_answer(long_output))
    try:
        run = make_run(
            tmp_path / "run", [make_task(1, 0, instances=[Instance(input="", output=long_output)])]
        )
        config = judge_yaml(tmp_path / "j.yaml", server.url, context_tokens=2048)
        assert (
            CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--quiet"]).exit_code == 0
        )
        prompt = server.received[0]["messages"][-1]["content"]
        assert CLIPPED in prompt and len(prompt) <= (2048 - 256) * 3  # fits the judge's context
        (judgment,) = read_judgments(run).values()
        assert judgment.correct_output is True
    finally:
        server.close()


def test_the_context_length_comes_from_the_servers_model_list(tmp_path, monkeypatch):
    """vLLM's /v1/models reports `max_model_len`; the judge fits its prompts to it."""
    from pipeline.judge.context import judge_context_tokens
    from pipeline.teachers.config import TeacherConfig

    server = FakeJudge(lambda body: (200, verdict(4)), model="served-judge")
    try:
        served = TeacherConfig(backend="openai", model="served-judge", base_urls=[server.url])
        assert judge_context_tokens(served) == 8192  # the fake's list gives no length: the default
        server.max_model_len = 1024
        assert judge_context_tokens(served) == 1024
        assert judge_context_tokens(TeacherConfig(backend="vllm", engine={"max_model_len": 512})) == 512
    finally:
        server.close()


def test_the_paper_comparable_figure_judges_one_seeded_random_instance(tmp_path, monkeypatch):
    """The paper's expert saw one random instance a task; a task whose second instance is wrong is
    not all-correct, but its paper-comparable verdict depends on the instance drawn."""
    from pipeline.judge.sample import sampled_instance

    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")

    def answer(body: dict) -> tuple[int, str]:
        wrong = "Output: wrong answer" in prompt_of(body)
        return 200, verdict(2 if wrong else 5, correct=not wrong)

    server = FakeJudge(answer)
    try:
        good, bad = Instance(input="", output="right answer"), Instance(input="", output="wrong answer")
        tasks = [make_task(1, k, instances=[good, bad]) for k in range(12)]
        run = make_run(tmp_path / "run", tasks)
        config = judge_yaml(tmp_path / "j.yaml", server.url)
        result = CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--json", "--quiet"])
        assert result.exit_code == 0, result.output
        figures = json.loads(result.stdout)["figures"]
        drawn = [sampled_instance(t, 0) for t in tasks]
        assert 0 < drawn.count(1) < len(tasks)  # the seeded draw picks both instances across tasks
        assert figures["sampled"] == 12
        assert figures["yes"]["correct_output"] == drawn.count(0)  # right where the good one was drawn
        assert figures["yes_all_instances"]["correct_output"] == 0  # every task has a wrong instance
        current = read_judgments(run)
        assert [current[t.id].sampled_instance for t in tasks] == drawn
        assert len(server.received) == 24  # the whole task, and its drawn instance alone
        # The draw is seeded: a rerun asks nothing and the figures stay.
        again = CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--json", "--quiet"])
        assert json.loads(again.stdout)["asked"] == 0 and json.loads(again.stdout)["figures"] == figures
    finally:
        server.close()


def test_a_judge_failing_every_attempt_costs_one_requests_retries_not_every_requests(tmp_path, monkeypatch):
    """A batch stops once as many attempts in a row failed as one request may make (5, whichever
    requests they were), and the one-at-a-time requests that follow are tried once each: a judge
    failing everything is dropped after 5 + 3 attempts, not 10 requests x 5."""
    monkeypatch.setenv("SI_FAKE_JUDGE_KEY", "k")
    server = FakeJudge(lambda body: (500, "the engine died"))
    try:
        run = make_run(tmp_path / "run", [make_task(1, k) for k in range(10)])
        config = judge_yaml(
            tmp_path / "j.yaml", server.url, batch_size=4, teacher={"concurrency": 1, "max_retries": 4}
        )
        result = CliRunner().invoke(main, ["judge", str(run), "--config", str(config), "--quiet"])
        assert result.exit_code == 2 and "3 requests in a row failed" in result.output
        assert len(server.received) == 5 + 3
    finally:
        server.close()
