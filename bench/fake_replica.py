"""A simulated OpenAI-compatible teacher replica on 127.0.0.1, with a fixed capacity (bench and tests).

Each replica works on at most `capacity` requests at once, `service_s` seconds each. Beyond that it
either queues the request until a slot frees (`overflow="queue"`, a vLLM server whose batch is full)
or refuses it at once with HTTP 429 (`overflow="refuse"`, a rate-limited API). A random share
`failure_rate` of requests fails with HTTP 500 without being served. It answers
`/v1/completions` and `/v1/chat/completions` with the request's own prompt echoed back, and records
every request it answered (the prompt), so a caller can check that each was answered exactly once.

Not a model and not a benchmark of vLLM: a stand-in for a cluster, to measure our client.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Overflow = Literal["queue", "refuse"]
Writer = Callable[[dict, str], tuple[str, str]]
"""What a replica answers: (request body, prompt) -> (reply text, finish reason); default: an echo."""


@dataclass
class ReplicaStats:
    """What one replica did."""

    answered: Counter[str] = field(default_factory=Counter)
    """Prompts answered with 200 (a prompt answered twice would be paid twice)."""
    failed: int = 0
    refused: int = 0
    peak_concurrency: int = 0


class FakeReplica:
    """One simulated replica; `start()` binds a free port on 127.0.0.1, `stop()` closes it."""

    def __init__(
        self,
        capacity: int = 8,
        service_s: float = 0.2,
        failure_rate: float = 0.0,
        overflow: Overflow = "queue",
        seed: int = 0,
        port: int = 0,
        writer: Writer | None = None,
    ):
        self.capacity = capacity
        self.service_s = service_s
        self.failure_rate = failure_rate
        self.overflow = overflow
        self.stats = ReplicaStats()
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._active = 0
        self._rng = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = port
        self.writer = writer
        self.dead = False

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("the replica was never started")
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> FakeReplica:
        replica = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                status, payload = replica.handle(self.path, body)
                if replica.dead:  # crashed while serving: the connection drops, no reply
                    self.close_connection = True
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = server.server_address[1]
        self.dead = False
        server.daemon_threads = True
        server.request_queue_size = 1024
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def die(self) -> None:
        """Crash: stop listening, and drop the requests being served without a reply."""
        self.dead = True
        self.stop()

    def revive(self) -> FakeReplica:
        """Come back on the same port (as a restarted server does)."""
        return self.start()

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        """Serve one request: (status, JSON body)."""
        chat = path.rstrip("/").endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        with self._lock:
            fail = self._rng.random() < self.failure_rate
        if fail:
            with self._lock:
                self.stats.failed += 1
            return 500, {"error": {"message": "simulated replica failure", "type": "server_error"}}
        if self.overflow == "refuse":
            if not self._slots.acquire(blocking=False):
                with self._lock:
                    self.stats.refused += 1
                return 429, {"error": {"message": "too many requests at once", "type": "rate_limit"}}
        else:
            self._slots.acquire()
        try:
            with self._lock:
                self._active += 1
                self.stats.peak_concurrency = max(self.stats.peak_concurrency, self._active)
            time.sleep(self.service_s)
            with self._lock:
                self._active -= 1
                if self.dead:
                    return 599, {}
                self.stats.answered[prompt] += 1
        finally:
            self._slots.release()
        text, finish = self.writer(body, prompt) if self.writer else (f"answer to: {prompt}", "stop")
        return 200, _reply(body, prompt, chat, text, finish)


def _reply(body: dict, prompt: str, chat: bool, text: str, finish: str) -> dict:
    n = int(body.get("n") or 1)
    if chat:
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            for i in range(n)
        ]
    else:
        choices = [{"index": i, "text": text, "finish_reason": finish, "logprobs": None} for i in range(n)]
    tokens = max(1, len(text.split()))
    return {
        "id": "cmpl-fake",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": choices,
        "usage": {
            "prompt_tokens": max(1, len(prompt.split())),
            "completion_tokens": tokens * n,
            "total_tokens": max(1, len(prompt.split())) + tokens * n,
        },
    }


def serve_replicas(argv: list[str] | None = None) -> None:
    """Host several replicas in this process for a client in another one (no shared GIL):
    prints their base URLs as one JSON line, serves until stdin closes, then prints each replica's
    answered prompts and failure counts as one JSON line."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible replicas on 127.0.0.1")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--service-ms", type=float, default=200.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--overflow", choices=["queue", "refuse"], default="queue")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    replicas = [
        FakeReplica(
            args.capacity, args.service_ms / 1000, args.failure_rate, args.overflow, args.seed * 100 + i
        )
        for i in range(args.count)
    ]
    for replica in replicas:
        replica.start()
    print(json.dumps([r.base_url for r in replicas]), flush=True)
    sys.stdin.read()  # until the client closes our stdin
    for replica in replicas:
        replica.stop()
    stats = [
        {
            "answered": dict(r.stats.answered),
            "failed": r.stats.failed,
            "refused": r.stats.refused,
            "peak_concurrency": r.stats.peak_concurrency,
        }
        for r in replicas
    ]
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    serve_replicas()
