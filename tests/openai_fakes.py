"""The wire format the tests' fake OpenAI-compatible servers speak (one definition for all of them),
and the small run they serve (seed texts, a config).

Each fake (`test_rounds.FakeTeacher`, `test_constrained_run.LayoutTeacher`, `judge_fakes.FakeJudge`)
decides what to answer; these helpers read its request and write the answer as the `openai` client
expects it (completions or chat, usage counted in words).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def read_request(handler: BaseHTTPRequestHandler) -> tuple[dict[str, Any], bool, str, str]:
    """(body, chat?, the prompt or the last message, a digest of the whole body)."""
    body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
    chat = handler.path.endswith("/chat/completions")
    text = body["messages"][-1]["content"] if chat else body["prompt"]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return body, chat, text, digest


def completion(body: dict[str, Any], chat: bool, prompt: str, reply: str, finish: str) -> dict[str, Any]:
    """A completions or chat.completions response with one choice; tokens counted as words."""
    usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(reply.split()) + 1}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": reply, "finish_reason": finish, "logprobs": None}
    return {
        "id": "x",
        "object": "chat.completion" if chat else "text_completion",
        "created": 0,
        "model": body["model"],
        "choices": [choice],
        "usage": usage,
    }


def error(message: str, kind: str = "invalid_request_error", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, **extra}}


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> bool:
    """Write the response; False when the client has gone away (a killed run)."""
    data = json.dumps(payload).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()
    except OSError:
        return False
    return True


class FakeServer(ThreadingHTTPServer):
    """A fake teacher on 127.0.0.1 that counts each request body per API key (`calls`)."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        super().__init__(("127.0.0.1", 0), handler)
        self.calls: Counter[tuple[str, str]] = Counter()  # (Authorization header, body digest)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> FakeServer:
        """Serve in a daemon thread; returns self."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def calls_for(self, key: str) -> Counter[str]:
        """How often each distinct request body came with API key `key`."""
        return Counter({k: n for (auth, k), n in self.calls.items() if auth == f"Bearer {key}"})


class ServedFake:
    """A fake whose request handler runs on its own `FakeServer` (started by `serve`)."""

    httpd: FakeServer

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = FakeServer(handler).start()

    @property
    def url(self) -> str:
        return self.httpd.url

    def close(self) -> None:
        self.httpd.stop()


def closed_port_url() -> str:
    """The base URL of a port nothing listens on (bound, then closed: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class SilentServer:
    """A socket that accepts every connection and never answers (a hung server, a black-holed proxy)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # read nothing, answer nothing

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


def models_list(model: str) -> dict[str, Any]:
    """What GET /v1/models answers (the pre-flight check's request)."""
    return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "fake"}]}


def run_settings(url: str, *, concurrency: int = 1, **changes: Any) -> dict[str, Any]:
    """A small generate config (4 prompts, 2 rounds) against a fake teacher keyed by $SI_FAKE_KEY."""
    from pipeline.teachers.config import TeacherConfig

    teacher = TeacherConfig(
        backend="openai",
        model="fake-teacher",
        base_urls=[url],
        api_key_env="SI_FAKE_KEY",
        concurrency=concurrency,
        retry_base_s=0.0,
    )
    return {"batch_size": 4, "rounds": 2, "teacher": teacher, **changes}


# -- the small run the fakes serve ----------------------------------------------------------------------
SEED_TEXTS = [
    "Write a thank-you note to a neighbour who watered my plants.",
    "Classify the animal as a mammal, bird, reptile or fish.",
    "Give three tips for staying focused while studying at home.",
    "Convert the temperature from Fahrenheit to Celsius.",
    "Tell me whether the sentence is written in the past or present tense.",
    "Suggest a name for a small bookshop by the river.",
    "Explain why leaves change colour in the autumn.",
    "Summarize the paragraph in one sentence for a busy reader.",
    "Rank the planets from the smallest to the largest.",
    "Turn the list of steps into a short paragraph.",
    "Decide whether the review is positive or negative.",
    "Plan a simple weekly menu for a vegetarian family.",
]


def write_seeds(path: Path, texts: list[str]) -> Path:
    """A seed file of `texts`, every other one with an input; classification by the first words."""
    from pipeline.run.schemas import Instance, SeedTask

    rows = [
        SeedTask(
            id=f"seed_{k}",
            name=f"seed_{k}",
            instruction=text,
            instances=[Instance(input="" if k % 2 else f"example input {k}", output=f"example output {k}")],
            is_classification=text.startswith(("Classify", "Tell me whether", "Decide", "Rank")),
        )
        for k, text in enumerate(texts)
    ]
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    return path


def judged_generate_yaml(tmp_path: Path, teacher_url: str, judge: dict) -> Path:
    """gen.yaml for a 2-round `generate` against a fake teacher with `judge.enabled` and the judge `judge`."""
    import yaml

    config = {
        "seeds": str(write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS)),
        "batch_size": 4,
        "rounds": 2,
        "decoding": {"constrained": "off"},
        "teacher": {
            "backend": "openai",
            "model": "fake-teacher",
            "base_urls": [teacher_url],
            "api_key_env": "SI_FAKE_KEY",
            "concurrency": 1,
            "retry_base_s": 0.0,
        },
        "judge": {"enabled": True, "teacher": {"backend": "openai", **judge}},
    }
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
