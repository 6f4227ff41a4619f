"""The pipeline's own CPU per teacher request and per kept task, against a SIMULATED fleet of replicas.

Runs the real `generate` (`run_generation`: the self-instruct recipe, parsing, filters, ROUGE-L dedup,
commits, summaries and the request cache, all on) against `--replicas` simulated teacher replicas
(bench/fleet_replica.py, one process each, `--capacity` requests at once, `--service-ms` each, replies
in the recipe's layouts drawn from ../shared/bench/instructions_52k.jsonl). The fleet is sized to be
faster than one client core, so the client is what limits the run; its CPU time is read with
`resource.getrusage(RUSAGE_SELF)` around the run (the replicas are other processes and do not count;
the cache's writer thread does).

Twice, on fresh replicas and run directories, the same requests and replies: the baseline is the
same client with the `openai` SDK's `completions.create` and response models on the wire (what the
project used before `pipeline/teachers/wire.py`); then the wire path. Prints CPU ms per request, CPU ms
per kept task, the kept tasks per second one client core sustains (1000 / ms per kept task), the
ratio wire/baseline, and the CPU capability. Then the teacher client alone: the same requests sent
again through a fresh teacher (no cache, no pipeline), its CPU per request. Targets: <= 0.5 ms per
request for the client, <= 5 ms per kept task for the whole generate.

    python bench/fleet.py [--replicas 8] [--capacity 64] [--service-ms 100] [--batch-size 64]
                          [--rounds 7] [--paths sdk,wire] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.teachers.base import Completion, Request  # noqa: E402
from pipeline.teachers.openai_compat import BACKEND, OpenAITeacher  # noqa: E402
from pipeline.teachers.retry import BadResponse  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import Recording  # noqa: E402  (bench/generate.py: a teacher that keeps what it sent)

REPO = Path(__file__).resolve().parents[1]
TARGET_MS_PER_REQUEST = 0.5
TARGET_MS_PER_KEPT = 5.0
MIN_REQUESTS = 5000


class SdkTeacher(OpenAITeacher):
    """The baseline: our client (routing, AIMD, retries) with the openai SDK's `create` on the wire and
    its pydantic response models read back, as `openai_compat` did before the wire path."""

    async def _stream(self, queue: Any, deliver: Any) -> None:
        import openai

        per_replica = self.config.concurrency
        limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
            max_connections=max(per_replica, openai.DEFAULT_CONNECTION_LIMITS.max_connections or 0),
            max_keepalive_connections=per_replica,
        )
        self._sdk = {
            replica.url.rstrip("/"): openai.AsyncOpenAI(
                base_url=replica.url,
                api_key=self.api_key,
                max_retries=0,
                timeout=self.config.timeout_s,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self.config.timeout_s),
            )
            for replica in self.router.replicas
        }
        try:
            await super()._stream(queue, deliver)
        finally:
            for client in self._sdk.values():
                await client.close()

    async def _call(self, client: Any, kwargs: dict[str, Any], chat: bool) -> Any:  # type: ignore[override]
        sdk = self._sdk[client.base_url]
        return await (sdk.chat.completions if chat else sdk.completions).create(**kwargs)

    def _completion(self, response: Any, request: Request) -> Completion:  # type: ignore[override]
        choices = getattr(response, "choices", None)
        if isinstance(response, str) or not choices or len(choices) != request.params.n:
            raise BadResponse("the reply has no choices, or not as many as asked")
        ordered = sorted(choices, key=lambda c: c.index or 0)
        if request.is_chat:
            texts = [(c.message.content if c.message is not None else None) or "" for c in ordered]
        else:
            texts = [c.text or "" for c in ordered]
        usage = getattr(response, "usage", None)
        return Completion(
            texts=texts,
            finish_reasons=[c.finish_reason or "unknown" for c in ordered],
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            backend=BACKEND,
            model=self.identity.model,
        )


PATHS = {"sdk": SdkTeacher, "wire": OpenAITeacher}


@contextmanager
def fleet(args: argparse.Namespace) -> Iterator[tuple[list[str], list[dict]]]:
    """`--replicas` replica processes; yields their URLs and, after the block, what each answered."""
    hosts: list[subprocess.Popen] = []
    stats: list[dict] = []
    try:
        for i in range(args.replicas):
            command = [sys.executable, str(Path(__file__).with_name("fleet_replica.py"))]
            command += ["--capacity", str(args.capacity), "--service-ms", str(args.service_ms)]
            command += ["--seed", str(i)]
            hosts.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        urls = [json.loads(host.stdout.readline()) for host in hosts]
        yield urls, stats
        for host in hosts:
            host.stdin.close()
        for host in hosts:
            stats.append(json.loads(host.stdout.readline()))
            host.wait(timeout=30)
    finally:
        for host in hosts:
            if host.poll() is None:
                host.kill()
                host.wait()


def cpu_seconds() -> float:
    """This process's CPU time, every thread (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(path: str, args: argparse.Namespace, rounds: int, batch_size: int) -> dict:
    """One `generate` run on fresh replicas and a fresh run directory; the client's CPU, from getrusage."""
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.protocol import run_generation

    with fleet(args) as (urls, stats):
        overrides = {
            "method": "self-instruct",
            "batch_size": batch_size,
            "rounds": rounds,
            "time_budget": "none",
            "seed": args.seed,
            "decoding.constrained": "off",
            "teacher.backend": "openai",
            "teacher.model": "fake-teacher",
            "teacher.base_urls": urls,
            "teacher.cache": True,
            "teacher.concurrency": args.capacity,
            "teacher.timeout_s": 60.0,
        }
        config = load_config(REPO / "configs" / "default.yaml", GenerateConfig, overrides)
        teacher = PATHS[path](config.teacher)
        recording = Recording(teacher)
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as run_dir:
            started, cpu_started = time.perf_counter(), cpu_seconds()
            outcome = run_generation(config, run_dir, teacher=recording)
            cpu_s = cpu_seconds() - cpu_started
            wall_s = time.perf_counter() - started
        teacher.close()
        # The client alone: the same requests again, through a fresh teacher of the same kind, no cache.
        alone = PATHS[path](config.teacher)
        cpu_started = cpu_seconds()
        alone.generate(recording.sent)
        alone_cpu_s = cpu_seconds() - cpu_started
        alone.close()
    assert outcome.summary is not None
    requests = int(outcome.usage.get("requests", 0))
    kept = sum(row.kept for row in outcome.summary.rounds)
    candidates = sum(row.candidates for row in outcome.summary.rounds)
    answered = sum(s["answered"] for s in stats)
    return {
        "path": path,
        "rounds": rounds,
        "requests": requests,
        "candidates": candidates,
        "kept": kept,
        "wall_s": round(wall_s, 2),
        "client_cpu_s": round(cpu_s, 2),
        "cpu_ms_per_request": round(1000 * cpu_s / max(1, requests), 3),
        "teacher_cpu_ms_per_request": round(1000 * alone_cpu_s / max(1, len(recording.sent)), 3),
        "cpu_ms_per_kept": round(1000 * cpu_s / max(1, kept), 3),
        "kept_per_s_one_core": round(kept / cpu_s, 1) if cpu_s else None,
        "requests_per_s": round(requests / wall_s, 1),
        "answered_by_replicas": answered,
        "paid_once": answered == 2 * requests == 2 * len(recording.sent),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--capacity", type=int, default=64, help="requests one replica serves at once")
    parser.add_argument("--service-ms", type=float, default=100.0, help="time one request takes")
    parser.add_argument("--batch-size", type=int, default=64, help="instruction prompts per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--paths", default="sdk,wire", help="sdk (the baseline), wire; comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or any(p not in PATHS for p in paths) or args.replicas < 1 or args.rounds < 1:
        parser.error("--paths takes sdk and/or wire; --replicas and --rounds must be positive")

    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        bf16 = "avx512_bf16" in handle.read()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"SIMULATED fleet: {args.replicas} replica processes, {args.capacity} requests at once each, "
        f"{args.service_ms:.0f} ms a request (ideal {args.replicas * args.capacity * 1000 / args.service_ms:.0f} "
        f"req/s); cpu capability: {capability}, avx512_bf16: {'yes' if bf16 else 'no'}; {os.cpu_count()} cores, "
        f"load average {load}",
        file=sys.stderr,
    )
    run_once(paths[-1], args, rounds=1, batch_size=8)  # warm-up (imports, first connections): not reported
    results = [run_once(path, args, args.rounds, args.batch_size) for path in paths]
    base = results[0]
    for row in results:
        row["cpu_per_request_vs_first"] = round(row["cpu_ms_per_request"] / base["cpu_ms_per_request"], 3)
        row["client_cpu_per_request_vs_first"] = round(
            row["teacher_cpu_ms_per_request"] / base["teacher_cpu_ms_per_request"], 3
        )
    if args.json:
        print(
            json.dumps(
                {"simulation": True, "cpu_capability": capability, "args": vars(args), "results": results},
                indent=2,
            )
        )
    else:
        header = (
            "path",
            "requests",
            "kept",
            "wall s",
            "cpu s",
            "ms/req",
            "client ms/req",
            "ms/kept",
            "kept/s/core",
            "req/s",
            "once",
        )
        print("{:>5} {:>8} {:>6} {:>7} {:>7} {:>7} {:>13} {:>8} {:>11} {:>7} {:>5}".format(*header))
        for r in results:
            print(
                f"{r['path']:>5} {r['requests']:>8} {r['kept']:>6} {r['wall_s']:>7.1f} {r['client_cpu_s']:>7.2f} "
                f"{r['cpu_ms_per_request']:>7.3f} {r['teacher_cpu_ms_per_request']:>13.3f} "
                f"{r['cpu_ms_per_kept']:>8.3f} {r['kept_per_s_one_core']:>11.1f} "
                f"{r['requests_per_s']:>7.1f} {'yes' if r['paid_once'] else 'NO':>5}"
            )
    last = results[-1]
    if len(results) > 1:
        print(
            f"{last['path']} / {base['path']}: {last['client_cpu_per_request_vs_first']:.3f}x the teacher client's CPU "
            f"per request, {last['cpu_per_request_vs_first']:.3f}x the whole generate's",
            file=sys.stderr,
        )
    for r in results:
        req_ok = "meets" if r["teacher_cpu_ms_per_request"] <= TARGET_MS_PER_REQUEST else "MISSES"
        kept_ok = "meets" if r["cpu_ms_per_kept"] <= TARGET_MS_PER_KEPT else "MISSES"
        size = "" if r["requests"] >= MIN_REQUESTS else f" (only {r['requests']} requests: < {MIN_REQUESTS})"
        print(
            f"{r['path']}: teacher client {r['teacher_cpu_ms_per_request']:.3f} ms/request ({req_ok} <= "
            f"{TARGET_MS_PER_REQUEST}); whole generate {r['cpu_ms_per_request']:.3f} ms/request, "
            f"{r['cpu_ms_per_kept']:.3f} ms/kept task ({kept_ok} <= {TARGET_MS_PER_KEPT}); one core sustains "
            f"{1000 / r['teacher_cpu_ms_per_request']:.0f} requests/s (client alone), "
            f"{1000 / r['cpu_ms_per_request']:.0f} requests/s and {r['kept_per_s_one_core']:.0f} kept tasks/s "
            f"(whole generate){size}",
            file=sys.stderr,
        )
    return 0 if all(r["paid_once"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
