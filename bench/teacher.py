"""Teacher overhead: the same prompts through raw vLLM, our vLLM backend and our openai backend.

(a) `vllm.LLM.generate` on one engine, (b) our `VLLMTeacher` on that same engine (cache off),
(c) our `OpenAITeacher` against vLLM's OpenAI server on 127.0.0.1 (cache off). Rounds are
interleaved (a, b, c, a, b, c, ...) so that load from other processes hits all three alike; we report
the median tokens/s of each and its ratio to (a). Targets: (b) >= 0.95, (c) >= 0.8.

    python bench/teacher.py [--prompts 64] [--max-tokens 128] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUBJECTS = [
    "a lighthouse keeper",
    "a sourdough starter",
    "a bicycle commute",
    "a city library",
    "a rainy harbour",
    "an old violin",
    "a mountain hut",
    "a night train",
    "a vegetable garden",
    "a chess club",
    "a paper map",
    "a winter market",
    "a river ferry",
    "a pottery class",
    "a desert road",
    "a school choir",
    "a tide pool",
    "a repair cafe",
    "a spice cupboard",
    "a hiking boot",
]
TASKS = [
    "Write a short story about {s}.",
    "Describe {s} to someone who has never seen one.",
    "List three surprising facts one might learn about {s}.",
    "Explain why {s} matters to a small town.",
]


def bench_prompts(count: int) -> list[str]:
    """Our own prompts: every task template with every subject, in a fixed order."""
    out = [t.format(s=s) for s in SUBJECTS for t in TASKS]
    while len(out) < count:
        out += out
    return [f"Instruction: {p}\nResponse:" for p in out[:count]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="bundled")
    parser.add_argument(
        "--no-server", action="store_true", help="skip (c): compare raw vLLM and our backend only"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) must still run the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from pipeline.teachers import EngineOptions, Request, SamplingParams, TeacherConfig
    from pipeline.teachers.engine import has_cuda
    from pipeline.teachers.openai_compat import OpenAITeacher
    from pipeline.teachers.server import ServerOptions, VLLMServer, free_port
    from pipeline.teachers.vllm_local import VLLMTeacher, build_llm, to_vllm_params

    small = {} if has_cuda() else {"gpu_memory_utilization": 0.3, "kv_cache_memory_gib": 1.0}
    engine = EngineOptions(max_model_len=2048, **small)
    prompts = bench_prompts(args.prompts)
    requests = [
        Request(prompt=p, params=SamplingParams(temperature=0.8, max_tokens=args.max_tokens, seed=i))
        for i, p in enumerate(prompts)
    ]
    log = Path(tempfile.mkdtemp(prefix="bench-teacher-")) / "server.log"
    server = VLLMServer(
        ServerOptions(model=args.model, port=free_port(), engine=engine),
        log,
    )
    if not args.no_server:
        t0 = time.perf_counter()
        server.start(timeout_s=600)
        print(f"server up in {time.perf_counter() - t0:.0f} s at {server.base_url}", file=sys.stderr)
    try:
        t0 = time.perf_counter()
        llm = build_llm(args.model, engine)
        print(f"engine loaded in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        config = TeacherConfig(backend="vllm", model=args.model, engine=engine, cache=False)
        ours = VLLMTeacher(config, llm=llm)
        remote = OpenAITeacher(
            TeacherConfig(
                backend="openai", model=args.model, base_urls=[server.base_url], cache=False, concurrency=64
            )
        )

        def raw() -> int:
            outputs = llm.generate(prompts, [to_vllm_params(r.params) for r in requests], use_tqdm=False)
            return sum(len(c.token_ids) for o in outputs for c in o.outputs)

        def backend(teacher) -> int:
            return sum(c.completion_tokens for c in teacher.generate(requests))

        runs = {"a_raw_vllm": raw, "b_vllm_backend": lambda: backend(ours)}
        if not args.no_server:
            runs["c_openai_backend"] = lambda: backend(remote)
        for run in runs.values():  # warm-up: first-request costs, prefix cache filled for all alike
            run()
        rates: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        tokens: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                count = run()
                rates[name].append(count / (time.perf_counter() - start))
                # CPU time of this (client) process: our own overhead, unlike wall time barely
                # touched by other processes competing for the cores.
                cpu[name].append(time.process_time() - start_cpu)
                tokens[name] = count
    finally:
        server.stop()

    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["a_raw_vllm"]
    result = {
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "tokens_per_run": tokens,
        "tokens_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "median_tokens_per_s": {k: round(v, 1) for k, v in medians.items()},
        "ratio_to_raw": {k: round(v / base, 3) for k, v in medians.items()},
        "client_cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "targets": {"b_vllm_backend": 0.95, "c_openai_backend": 0.8},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.prompts} prompts x {args.max_tokens} tokens, {args.rounds} interleaved rounds (median)")
    print(
        f"{'run':<20}{'tokens':>8}{'tok/s (each round)':>32}{'median':>10}{'ratio':>8}{'target':>8}"
        f"{'client CPU s':>14}"
    )
    for name in runs:
        each = ", ".join(f"{v:.0f}" for v in rates[name])
        target = result["targets"].get(name)
        print(
            f"{name:<20}{tokens[name]:>8}{each:>32}{medians[name]:>10.0f}{medians[name] / base:>8.3f}"
            f"{'' if target is None else f'>={target}':>8}{statistics.median(cpu[name]):>14.3f}"
        )
    print("note: shared machine; figures are noisy, ratios come from the same interleaved run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
