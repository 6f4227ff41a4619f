"""The openai backend against a small, real OpenAI-compatible HTTP server that misbehaves on cue.

Each test scripts what the server does with each incoming request (fail, stall, garble, succeed) and
then checks what the server actually received: how many attempts, in what order, with which
`max_tokens`, and that a run stopped by a failure resumes from the cache without repeating a call.
Several servers at once stand for replicas, one of them dead or failing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from openai_fakes import ServedFake

from pipeline.core.errors import UserError
from pipeline.teachers import (
    CachedTeacher,
    Request,
    RequestQueue,
    SamplingParams,
    TeacherConfig,
    TeacherError,
    make_teacher,
)
from pipeline.teachers.cache import CACHE_FILE, CacheWriteError, CompletionCache
from pipeline.teachers.openai_compat import OpenAITeacher
from pipeline.teachers.usage import ReplicaCounts

CONTEXT_LIMIT = 2048
PROMPT_TOKENS = 1900  # what the fake server counts for every prompt in the context-length tests


def context_refusal(style: str, prompt: int, max_tokens: int) -> str:
    """A context-length refusal in the words of a real server (see test_teacher_units.OVERFLOWS)."""
    if style == "openai-classic":
        return (
            f"This model's maximum context length is {CONTEXT_LIMIT} tokens. However, you requested "
            f"{prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in the completion). "
            "Please reduce the length of the messages or completion."
        )
    if style == "vllm-max-tokens-too-large":
        return (
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum "
            f"context length is {CONTEXT_LIMIT} tokens and your request has {prompt} input tokens "
            f"({max_tokens} > {CONTEXT_LIMIT} - {prompt}). (parameter=max_tokens, value={max_tokens})"
        )
    if style == "no-numbers":
        return "context_length_exceeded: the request does not fit this model's context length"
    raise AssertionError(style)


class FakeOpenAI(ServedFake):
    """An OpenAI-compatible server on 127.0.0.1 whose replies follow a script, recording every request.

    `by_prompt` fixes the action for given prompts (ahead of the script); `delay_s` is how long each
    answer takes, so that a healthy server always has requests open.
    """

    def __init__(self, script=(), default="ok", hang_s: float = 2.0, delay_s: float = 0.0, by_prompt=None):
        self.script = deque(script)
        self.default = default
        self.hang_s = hang_s
        self.delay_s = delay_s
        self.by_prompt = dict(by_prompt or {})
        self.received: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    if body.get("prompt") in fake.by_prompt:
                        action = fake.by_prompt[body["prompt"]]
                    else:
                        action = fake.script.popleft() if fake.script else fake.default
                    fake.received.append(
                        {"t": time.monotonic(), "path": self.path, "body": body, "action": action}
                    )
                fake.respond(self, action, body)

        self.serve(Handler)

    def prompts_answered(self) -> Counter:
        return Counter(r["body"].get("prompt") for r in self.received if r["action"] == "ok")

    @staticmethod
    def answer_text(body: dict) -> str:
        source = body.get("prompt") if "prompt" in body else body["messages"][-1]["content"]
        return f"answer to {source} (max_tokens={body.get('max_tokens')})"

    def ok_body(self, body: dict) -> dict:
        text = self.answer_text(body)
        n = int(body.get("n") or 1)
        if "messages" in body:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": f"{text} #{i}"},
                    "finish_reason": "stop",
                }
                for i in range(n)
            ]
            kind = "chat.completion"
        else:
            choices = [{"index": i, "text": f"{text} #{i}", "finish_reason": "stop"} for i in range(n)]
            kind = "text_completion"
        return {
            "id": "fake",
            "object": kind,
            "created": 0,
            "model": body.get("model", "m"),
            "choices": choices,
            "usage": {"prompt_tokens": 7, "completion_tokens": 5 * n, "total_tokens": 7 + 5 * n},
        }

    def respond(self, handler: BaseHTTPRequestHandler, action, body: dict) -> None:
        name, *args = action if isinstance(action, tuple) else (action,)
        if name == "ok":
            time.sleep(self.delay_s)
            self.send(handler, 200, json.dumps(self.ok_body(body)).encode())
        elif name == "status":
            code, headers = args[0], (args[1] if len(args) > 1 else {})
            message = args[2] if len(args) > 2 else f"scripted failure {code}"
            error = {"error": {"message": message, "type": "error", "code": code}}
            self.send(handler, code, json.dumps(error).encode(), headers)
        elif name == "fit":  # a server with a context limit: answers what fits, refuses the rest
            style, prompt = args[0], (args[1] if len(args) > 1 else PROMPT_TOKENS)
            if prompt + int(body["max_tokens"]) <= CONTEXT_LIMIT:
                self.send(handler, 200, json.dumps(self.ok_body(body)).encode())
                return
            message = context_refusal(style, prompt, int(body["max_tokens"]))
            error = {"error": {"message": message, "type": "BadRequestError", "code": 400}}
            self.send(handler, 400, json.dumps(error).encode())
        elif name == "badjson":
            self.send(handler, 200, b'{"choices": [ {"text": "unterminated')
        elif name == "empty":
            reply = self.ok_body(body)
            reply["choices"] = []
            self.send(handler, 200, json.dumps(reply).encode())
        elif name == "truncated":
            full = json.dumps(self.ok_body(body)).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(full)))
            handler.end_headers()
            handler.wfile.write(full[: len(full) // 3])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
        elif name == "drop":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
        elif name == "hang":
            time.sleep(self.hang_s)
            handler.close_connection = True
        else:
            raise AssertionError(f"unknown action {action!r}")

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, code: int, payload: bytes, headers: dict | None = None) -> None:
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)


@pytest.fixture
def fake():
    servers: list[FakeOpenAI] = []

    def start(script=(), default="ok", hang_s: float = 2.0, **options) -> FakeOpenAI:
        server = FakeOpenAI(script, default, hang_s, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def config(*urls: str, **overrides) -> TeacherConfig:
    base = {
        "backend": "openai",
        "model": "fake-model",
        "base_urls": list(urls),
        "max_retries": 3,
        "timeout_s": 5.0,
        "retry_base_s": 0.01,
        "retry_max_s": 0.05,
        "cache": False,
    }
    return TeacherConfig(**{**base, **overrides})


def prompts(count: int, max_tokens: int = 50) -> list[Request]:
    return [
        Request(prompt=f"prompt {i}", params=SamplingParams(max_tokens=max_tokens, seed=i))
        for i in range(count)
    ]


def test_completion_and_chat_round_trip_in_order(fake):
    server = fake()
    teacher = OpenAITeacher(config(server.url))
    requests = [
        Request(prompt="hello", params=SamplingParams(max_tokens=10)),
        Request(
            messages=[{"role": "user", "content": "hi there"}],
            params=SamplingParams(max_tokens=12, n=2, temperature=0.7),
        ),
    ]
    done = []
    out = teacher.generate(requests, on_done=done.append)
    assert out[0].texts == ["answer to hello (max_tokens=10) #0"]
    assert out[1].texts == ["answer to hi there (max_tokens=12) #0", "answer to hi there (max_tokens=12) #1"]
    assert sum(done) == 2
    paths = sorted(r["path"] for r in server.received)
    assert paths == ["/v1/chat/completions", "/v1/completions"]
    assert (
        teacher.usage.requests == 2
        and teacher.usage.prompt_tokens == 14
        and teacher.usage.completion_tokens == 15
    )


def test_server_errors_are_retried_then_succeed(fake):
    server = fake([("status", 500), ("status", 502), ("status", 503)])
    teacher = OpenAITeacher(config(server.url))
    [out] = teacher.generate(prompts(1))
    assert out.texts == ["answer to prompt 0 (max_tokens=50) #0"]
    assert [r["action"] for r in server.received] == [("status", 500), ("status", 502), ("status", 503), "ok"]
    assert teacher.usage.retries == 3


def test_rate_limit_waits_at_least_retry_after(fake):
    server = fake([("status", 429, {"Retry-After": "1"})])
    teacher = OpenAITeacher(config(server.url))
    [out] = teacher.generate(prompts(1))
    assert out.texts[0].startswith("answer to prompt 0")
    first, second = server.received
    assert first["action"][1] == 429 and second["action"] == "ok"
    # Our own backoff is at most 0.05 s here; the second attempt came only after the server's 1 s.
    assert second["t"] - first["t"] >= 1.0


@pytest.mark.parametrize("fault", ["truncated", "drop", "hang", "badjson", "empty"])
def test_broken_replies_are_retried(fake, fault):
    server = fake([fault], hang_s=1.5)
    teacher = OpenAITeacher(config(server.url, timeout_s=0.5))
    [out] = teacher.generate(prompts(1))
    assert out.texts == ["answer to prompt 0 (max_tokens=50) #0"]
    assert [r["action"] for r in server.received] == [fault, "ok"]


@pytest.mark.parametrize("style", ["openai-classic", "vllm-max-tokens-too-large"])
def test_context_length_refusal_fits_max_tokens_to_what_the_server_says_is_left(fake, style):
    server = fake(default=("fit", style))
    teacher = OpenAITeacher(config(server.url))
    [out] = teacher.generate(prompts(1, max_tokens=1000))
    fitted = CONTEXT_LIMIT - PROMPT_TOKENS - 8  # what is left, less a small margin: one retry
    assert [r["body"]["max_tokens"] for r in server.received] == [1000, fitted]
    assert out.texts == [f"answer to prompt 0 (max_tokens={fitted}) #0"]


def test_context_length_refusal_without_numbers_shrinks_by_a_fifth(fake):
    server = fake(default=("fit", "no-numbers"))
    teacher = OpenAITeacher(config(server.url))
    [out] = teacher.generate(prompts(1, max_tokens=200))
    assert [r["body"]["max_tokens"] for r in server.received] == [200, 160, 128]
    assert out.texts == ["answer to prompt 0 (max_tokens=128) #0"]


def test_a_prompt_longer_than_the_context_fails_at_once(fake):
    server = fake(default=("fit", "openai-classic", CONTEXT_LIMIT + 50))
    teacher = OpenAITeacher(config(server.url))
    with pytest.raises(TeacherError, match="prompt is longer than the model's context"):
        teacher.generate(prompts(1, max_tokens=100))
    assert len(server.received) == 1


def test_retries_are_bounded_then_a_clear_error(fake):
    server = fake(default=("status", 500))
    teacher = OpenAITeacher(config(server.url, max_retries=2))
    with pytest.raises(TeacherError, match=r"after 3 attempts.*HTTP 500") as caught:
        teacher.generate(prompts(1))
    assert isinstance(caught.value, UserError)
    assert len(server.received) == 3


def test_client_errors_are_not_retried(fake):
    server = fake(default=("status", 401, {}, "invalid api key"))
    teacher = OpenAITeacher(config(server.url))
    with pytest.raises(TeacherError, match="cannot be retried.*HTTP 401.*invalid api key"):
        teacher.generate(prompts(1))
    assert len(server.received) == 1


def test_requests_spread_over_several_base_urls(fake):
    first, second = fake(), fake()
    teacher = OpenAITeacher(config(first.url, second.url, concurrency=8))
    out = teacher.generate(prompts(12))
    assert [c.texts[0] for c in out] == [f"answer to prompt {i} (max_tokens=50) #0" for i in range(12)]
    assert len(first.received) > 0 and len(second.received) > 0
    assert len(first.received) + len(second.received) == 12
    assert teacher.usage.replicas == {
        first.url: ReplicaCounts(len(first.received), 0),
        second.url: ReplicaCounts(len(second.received), 0),
    }


def test_a_failing_replica_is_routed_around_by_retries(fake):
    broken, healthy = fake(default=("status", 503)), fake()
    teacher = OpenAITeacher(config(broken.url, healthy.url, concurrency=1, max_retries=4))
    out = teacher.generate(prompts(4))
    assert [c.texts[0] for c in out] == [f"answer to prompt {i} (max_tokens=50) #0" for i in range(4)]
    assert len(healthy.received) == 4


def refused_url() -> str:
    """The URL of a port nobody listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("death", ["connection refused", "HTTP 500"])
def test_a_dead_replica_does_not_attract_the_retries(fake, death):
    """A replica that fails fast always has the fewest requests open; least-busy routing alone sends it
    every retry and the run fails while the healthy replica idles. It must be benched instead."""
    healthy = fake(delay_s=0.05)
    broken = fake(default=("status", 500)) if death == "HTTP 500" else None
    dead_url = broken.url if broken is not None else refused_url()
    teacher = OpenAITeacher(config(dead_url, healthy.url, concurrency=16, max_retries=3))
    requests = prompts(48)
    out = teacher.generate(requests)
    assert [c.texts[0] for c in out] == [f"answer to prompt {i} (max_tokens=50) #0" for i in range(48)]
    # Every request answered by the healthy replica, exactly once: nothing lost, nothing paid twice.
    assert healthy.prompts_answered() == Counter(f"prompt {i}" for i in range(48))
    assert len(healthy.received) == 48
    assert teacher.usage.calls == 48 and teacher.usage.prompt_tokens == 48 * 7
    dead = teacher.usage.replicas[dead_url]
    assert dead.failures == dead.requests >= 1
    assert teacher.usage.replicas[healthy.url] == ReplicaCounts(48, 0)
    if broken is not None:
        assert len(broken.received) == dead.requests


def test_a_fatal_error_keeps_the_answers_already_paid_for(fake, tmp_path):
    """One request is refused for good while the others are being answered: those answers are cached
    before the error is raised, so a rerun pays only for the refused one."""
    requests = prompts(8)
    server = fake(delay_s=0.3, by_prompt={"prompt 3": ("status", 400, {}, "this prompt is not allowed")})
    # All 8 open at once (a fixed concurrency, not AIMD's slow start), so 7 are in flight at the error.
    teacher = make_teacher(
        config(server.url, concurrency=8, cache=True, adaptive_concurrency=False), cache_dir=tmp_path
    )
    with pytest.raises(TeacherError, match="cannot be retried.*not allowed"):
        teacher.generate(requests)
    assert len(CompletionCache(tmp_path)) == 7
    assert sorted(server.prompts_answered()) == sorted(f"prompt {i}" for i in range(8) if i != 3)

    del server.by_prompt["prompt 3"]
    before = len(server.received)
    again = make_teacher(config(server.url, concurrency=8, cache=True), cache_dir=tmp_path)
    out = again.generate(requests)
    assert [r["body"]["prompt"] for r in server.received[before:]] == ["prompt 3"]
    assert [c.cached for c in out] == [i != 3 for i in range(8)]


def test_a_cache_that_cannot_be_written_stops_the_batch_with_a_clear_error(fake, tmp_path):
    server = fake()
    teacher = make_teacher(config(server.url, concurrency=4, cache=True), cache_dir=tmp_path)
    (tmp_path / CACHE_FILE).symlink_to(Path("/dev/full"))  # every write: no space left on device
    with pytest.raises(CacheWriteError, match=rf"{CACHE_FILE}.*No space left on device") as caught:
        teacher.generate(prompts(20))
    assert isinstance(caught.value, UserError)


def test_interrupted_run_resumes_from_cache_without_repeating_calls(fake, tmp_path):
    requests = prompts(6)
    # Three answers, then the server breaks for good: the run stops with a clear error.
    server = fake(["ok", "ok", "ok"], default=("status", 500))
    teacher = make_teacher(config(server.url, concurrency=1, max_retries=2, cache=True), cache_dir=tmp_path)
    assert isinstance(teacher, CachedTeacher)
    with pytest.raises(TeacherError, match="rerun the same command to resume"):
        teacher.generate(requests)
    answered = [r["body"]["prompt"] for r in server.received if r["action"] == "ok"]
    assert len(answered) == 3

    # The server recovers; the rerun asks only for what was not answered.
    server.default = "ok"
    before = len(server.received)
    resumed = make_teacher(config(server.url, concurrency=1, cache=True), cache_dir=tmp_path)
    out = resumed.generate(requests)
    again = [r["body"]["prompt"] for r in server.received[before:]]
    assert sorted(again) == sorted(set(f"prompt {i}" for i in range(6)) - set(answered))
    assert [c.texts[0] for c in out] == [f"answer to prompt {i} (max_tokens=50) #0" for i in range(6)]
    assert [c.cached for c in out] == [f"prompt {i}" in answered for i in range(6)]
    assert resumed.usage.cache_hits == 3 and resumed.usage.calls == 3

    # A third, identical run makes no call at all.
    before = len(server.received)
    third = make_teacher(config(server.url, cache=True), cache_dir=tmp_path)
    assert [c.texts for c in third.generate(requests)] == [c.texts for c in out]
    assert len(server.received) == before
    assert third.usage.cache_hits == 6 and third.usage.prompt_tokens == 0


def test_cache_keys_on_sampling_params_and_model(fake, tmp_path):
    server = fake()
    base = Request(prompt="same prompt", params=SamplingParams(max_tokens=20, seed=1))
    variants = [
        base,
        base.model_copy(update={"params": SamplingParams(max_tokens=20, seed=2)}),
        base.model_copy(update={"params": SamplingParams(max_tokens=21, seed=1)}),
        base.model_copy(update={"params": SamplingParams(max_tokens=20, seed=1, temperature=0.5)}),
    ]
    make_teacher(config(server.url, cache=True), cache_dir=tmp_path).generate(variants)
    assert len(server.received) == 4
    make_teacher(config(server.url, cache=True), cache_dir=tmp_path).generate(variants)
    assert len(server.received) == 4
    make_teacher(config(server.url, cache=True, model="other-model"), cache_dir=tmp_path).generate([base])
    assert len(server.received) == 5


def test_identical_unseeded_requests_keep_distinct_cached_answers(fake, tmp_path):
    server = fake()
    same = [Request(prompt="draw", params=SamplingParams(max_tokens=5))] * 3
    first = make_teacher(config(server.url, cache=True), cache_dir=tmp_path).generate(same)
    assert len(server.received) == 3
    second = make_teacher(config(server.url, cache=True), cache_dir=tmp_path).generate(same)
    assert len(server.received) == 3
    assert sorted(c.texts[0] for c in first) == sorted(c.texts[0] for c in second)
    # A batch with one more copy than was ever answered sends exactly that one.
    make_teacher(config(server.url, cache=True), cache_dir=tmp_path).generate(same + same[:1])
    assert len(server.received) == 4


def test_no_cache_makes_every_call(fake, tmp_path):
    server = fake()
    for _ in range(2):
        make_teacher(config(server.url, cache=False), cache_dir=tmp_path).generate(prompts(2))
    assert len(server.received) == 4
    assert not (tmp_path / "teacher.jsonl").exists()


def test_requests_added_while_answering_are_sent_in_the_same_call(fake, tmp_path):
    """`answer` takes follow-ups from `deliver`: each first answer asks one more question at once,
    and a second run gets all of them from the cache (hits deliver at once and add their own follow-ups)."""
    server = fake()
    for attempt in range(2):
        teacher = make_teacher(config(server.url, concurrency=2, cache=True), cache_dir=tmp_path)
        queue = RequestQueue(prompts(3))
        asked = {i: f"prompt {i}" for i in range(3)}
        got: dict[int, str] = {}

        def deliver(batch, queue=queue, asked=asked, got=got):
            for index, completion in batch:
                got[index] = completion.texts[0]
                if index < 3:
                    text = f"follow-up to {index}"
                    [new] = queue.add([Request(prompt=text, params=SamplingParams(max_tokens=50))])
                    asked[new] = text

        teacher.answer(queue, deliver)
        assert len(queue) == 6 and sorted(got) == list(range(6))
        assert got == {i: f"answer to {text} (max_tokens=50) #0" for i, text in asked.items()}
        assert len(server.received) == 6  # the second run asked nothing
        assert teacher.usage.cache_hits == (6 if attempt else 0)
