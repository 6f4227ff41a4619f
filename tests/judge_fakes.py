"""Test helpers for the judge: a real local HTTP server speaking OpenAI's chat API whose replies a test
scripts per request (good JSON, prose, garbage, missing fields, 500s, a hang), and small run directories.

The server records every request body it received and every one it answered, so a test can prove that
a resumed judge never asked again for an answer it already had.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from openai_fakes import ServedFake, completion, error, models_list, send_json

from pipeline.core.jsonio import append_jsonl, iter_jsonl
from pipeline.run.rundir import RunDir
from pipeline.run.schemas import Instance, MachineTask, TeacherIdentity
from pipeline.run.state import RunState
from pipeline.run.summary import RunSummary

Answer = Callable[[dict], "tuple[int, str]"]
TEACHER = TeacherIdentity(backend="openai", model="fake-teacher", fingerprint="")


def read_lines(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)]


def body_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def prompt_of(body: dict) -> str:
    return body["messages"][-1]["content"]


def instruction_of(body: dict) -> str:
    """The task instruction inside a task-judging prompt."""
    match = re.search(r"^Instruction: (.*)$", prompt_of(body), re.MULTILINE)
    return match.group(1) if match else ""


def verdict(score: int, valid: bool = True, appropriate: bool = True, correct: bool = True) -> str:
    return json.dumps(
        {
            "reason": f"scored {score}",
            "valid_instruction": valid,
            "appropriate_input": appropriate,
            "correct_output": correct,
            "score": score,
        }
    )


class FakeJudge(ServedFake):
    """An OpenAI-compatible chat server on 127.0.0.1; `answer(body)` gives (HTTP status, reply text)."""

    def __init__(self, answer: Answer, model: str = "fake-judge"):
        self.answer = answer
        self.model = model
        self.received: list[dict] = []
        self.answered: list[dict] = []
        self.gets = 0
        self.max_model_len: int | None = None  # what GET /models reports, as vLLM does, when set
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with fake.lock:
                    fake.gets += 1
                listed = models_list(fake.model)
                if fake.max_model_len is not None:
                    listed["data"][0]["max_model_len"] = fake.max_model_len
                send_json(self, 200, listed)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.received.append(body)
                status, text = fake.answer(body)
                if status == 200:
                    payload = completion(body, True, "", text, "stop")
                    payload["usage"] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                else:
                    payload = error(text, "server_error", code=status)
                if not send_json(self, status, payload):
                    return  # the client went away (a killed judge)
                if status == 200:
                    with fake.lock:
                        fake.answered.append(body)

        self.serve(Handler)


def judge_yaml(path: Path, url: str, *, model: str = "fake-judge", **extra: object) -> Path:
    """A config file whose `judge:` section points at a fake judge (no retries wait)."""
    teacher = {
        "backend": "openai",
        "model": model,
        "base_urls": [url],
        "api_key_env": "SI_FAKE_JUDGE_KEY",
        "max_retries": 1,
        "retry_base_s": 0.0,
        "retry_max_s": 0.0,
    }
    teacher.update(extra.pop("teacher", {}))  # type: ignore[arg-type]
    path.write_text(json.dumps({"judge": {"teacher": teacher, **extra}}))
    return path


def make_task(
    round_no: int, k: int, instruction: str | None = None, instances: list[Instance] | None = None
) -> MachineTask:
    return MachineTask(
        id=f"r{round_no:04d}-{k:04d}",
        instruction=instruction or f"Task {round_no}.{k}: describe item {k}.",
        instances=instances or [Instance(input="", output=f"Item {k} is a thing.")],
        is_classification=False,
        round=round_no,
        method="self-instruct",
        teacher=TEACHER,
    )


def make_run(path: Path, tasks: list[MachineTask], rounds_done: int | None = None) -> Path:
    """A run directory holding `tasks` as committed rounds (config.yaml, machine_tasks.jsonl, state.json)."""
    run = RunDir(path)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config("method: self-instruct\n")
    append_jsonl(run.tasks_path, tasks)
    done = rounds_done if rounds_done is not None else max((t.round for t in tasks), default=0)
    state = RunState(rounds_done=done, kept_total=sum(t.round <= done for t in tasks))
    run.write_state(state)
    run.write_summary(
        RunSummary.from_state(state, method="self-instruct", seeds_path="", seeds_count=0, teacher=TEACHER)
    )
    return run.path


def grow_run(path: Path, tasks: list[MachineTask]) -> None:
    """Append a committed round's tasks, as `generate` would."""
    run = RunDir(path)
    append_jsonl(run.tasks_path, tasks)
    state = run.read_state()
    assert state is not None
    state.rounds_done = max(t.round for t in tasks)
    state.kept_total += len(tasks)
    run.write_state(state)
