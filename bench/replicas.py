"""Scaling of our openai teacher client over 1, 2, 4 and 8 replicas (a SIMULATED cluster).

Each replica is a fake OpenAI-compatible server on 127.0.0.1 (bench/fake_replica.py, all of them in
one child process) with a fixed
capacity: `--capacity` requests at once, `--service-ms` each, queueing beyond that (as a vLLM server
with a full batch does), and a small random share of HTTP 500 failures. Our `OpenAITeacher` (the
real client: routing, AIMD concurrency, failover, retries) sends `--waves` x capacity requests per
replica, so the ideal run takes `waves x service` whatever the replica count. We report requests/s,
the scaling efficiency against one replica measured in the same run (target >= 0.9 at 8), and check
that every request was answered exactly once (each prompt got one 200 from one replica: nothing lost,
nothing paid twice).

This simulates a cluster to measure our client; it says nothing about vLLM's own speed.

    python bench/replicas.py [--replicas 1,2,4,8] [--capacity 8] [--service-ms 200]
                             [--failure-rate 0.01] [--waves 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_EFFICIENCY = 0.9


@contextmanager
def replica_host(count: int, args: argparse.Namespace, seed: int) -> Iterator[tuple[list[str], list[dict]]]:
    """`count` fake replicas in a child process (its own interpreter: the servers do not compete with
    our client for one GIL); yields their URLs and, after the block, fills in what each one answered."""
    command = [sys.executable, str(Path(__file__).with_name("fake_replica.py")), "--count", str(count)]
    command += ["--capacity", str(args.capacity), "--service-ms", str(args.service_ms)]
    command += ["--failure-rate", str(args.failure_rate), "--seed", str(seed)]
    host = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stats: list[dict] = []
    try:
        assert host.stdout is not None and host.stdin is not None
        urls = json.loads(host.stdout.readline())
        yield urls, stats
        host.stdin.close()
        stats.extend(json.loads(host.stdout.readline()))
        host.wait(timeout=30)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def run_once(count: int, args: argparse.Namespace, seed: int) -> dict:
    """One run of `count` replicas: throughput, per-replica load and the exactly-once check."""
    from pipeline.teachers import Request, SamplingParams, TeacherConfig, make_teacher

    total = count * args.capacity * args.waves
    prompts = [f"replicas={count} request={i}" for i in range(total)]
    requests = [
        Request(prompt=p, params=SamplingParams(max_tokens=16, seed=i)) for i, p in enumerate(prompts)
    ]
    with replica_host(count, args, seed) as (urls, stats):
        config = TeacherConfig(
            backend="openai",
            model="fake-teacher",
            base_urls=urls,
            cache=False,
            concurrency=args.concurrency,
            retry_base_s=0.05,
            timeout_s=60.0,
        )
        teacher = make_teacher(config)
        started, cpu_started = time.perf_counter(), time.process_time()
        completions = teacher.generate(requests)
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    answered: Counter[str] = Counter()
    for replica in stats:
        answered.update(replica["answered"])
    matched = sum(1 for p, c in zip(prompts, completions, strict=True) if c.texts == [f"answer to: {p}"])
    exactly_once = len(completions) == total and matched == total and all(answered[p] == 1 for p in prompts)
    exactly_once = exactly_once and sum(answered.values()) == total
    usage = teacher.usage.as_dict()
    return {
        "replicas": count,
        "requests": total,
        "seconds": round(seconds, 3),
        "requests_per_s": round(total / seconds, 1),
        "ideal_requests_per_s": round(count * args.capacity / (args.service_ms / 1000), 1),
        "client_cpu_ms_per_request": round(1000 * cpu_s / total, 2),
        "per_replica_answered": [sum(r["answered"].values()) for r in stats],
        "failed_attempts": sum(r["failed"] for r in stats),
        "retries": usage.get("retries", 0),
        "replica_usage": usage.get("replicas", {}),
        "exactly_once": exactly_once,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2,4,8", help="replica counts, comma-separated")
    parser.add_argument("--capacity", type=int, default=8, help="requests one replica works on at once")
    parser.add_argument("--service-ms", type=float, default=200.0, help="time one request takes")
    parser.add_argument(
        "--failure-rate", type=float, default=0.01, help="share of requests failing (HTTP 500)"
    )
    parser.add_argument(
        "--waves", type=int, default=10, help="requests per replica, in multiples of capacity"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="teacher.concurrency (most per replica)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    counts = [int(c) for c in args.replicas.split(",") if c.strip()]
    if not counts or min(counts) < 1 or args.waves < 1 or args.capacity < 1:
        parser.error("replica counts, --waves and --capacity must be positive")
    if not 0.0 <= args.failure_rate < 0.5:
        parser.error("--failure-rate must be in [0, 0.5)")

    import torch

    print(
        "SIMULATION of a cluster: fake OpenAI-compatible replicas on 127.0.0.1, each serving "
        f"{args.capacity} requests at once, {args.service_ms:.0f} ms each, queueing beyond that, "
        f"{args.failure_rate:.1%} failing at random (HTTP 500). It measures our client (routing, "
        "AIMD concurrency, failover), not vLLM.",
        file=sys.stderr,
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"cpu capability: {torch.backends.cpu.get_cpu_capability()}; {os.cpu_count()} cores, load average "
        f"{load} (the client needs about ideal req/s x its CPU ms per request of one core)",
        file=sys.stderr,
    )
    # Warm-up, not reported: the first run pays for imports and the client's first connections.
    run_once(1, argparse.Namespace(**{**vars(args), "waves": 2}), seed=999)
    results = [run_once(count, args, seed) for seed, count in enumerate(counts)]
    base = results[0]["requests_per_s"] / counts[0]
    for row in results:
        row["efficiency"] = round(row["requests_per_s"] / (row["replicas"] * base), 3)
    if args.json:
        print(json.dumps({"simulation": True, "args": vars(args), "results": results}, indent=2))
    else:
        header = (
            "replicas",
            "requests",
            "seconds",
            "req/s",
            "ideal",
            "efficiency",
            "cpu ms/req",
            "500s",
            "once",
        )
        print("{:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>5} {:>5}".format(*header))
        for row in results:
            print(
                f"{row['replicas']:>8} {row['requests']:>8} {row['seconds']:>8.2f} {row['requests_per_s']:>8.1f} "
                f"{row['ideal_requests_per_s']:>8.1f} {row['efficiency']:>10.3f} "
                f"{row['client_cpu_ms_per_request']:>10.2f} {row['failed_attempts']:>5} "
                f"{'yes' if row['exactly_once'] else 'NO':>5}"
            )
    last = results[-1]
    verdict = "meets" if last["efficiency"] >= TARGET_EFFICIENCY else "MISSES"
    print(
        f"efficiency at {last['replicas']} replicas vs {counts[0]}: {last['efficiency']:.3f} ({verdict} the "
        f"{TARGET_EFFICIENCY} target); every request answered exactly once: "
        f"{'yes' if all(r['exactly_once'] for r in results) else 'NO'}",
        file=sys.stderr,
    )
    return 0 if all(r["exactly_once"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
