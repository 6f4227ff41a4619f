"""Teacher overhead: the same prompts through raw vLLM, our vLLM backend and our openai backend.

(a) `vllm.LLM.generate` on one engine, (b) our `VLLMTeacher` on that same engine (cache off),
(c) our `OpenAITeacher` against vLLM's OpenAI server on 127.0.0.1 (cache off), (d) the same
`OpenAITeacher` with the request cache on, as runs use it (every answer stored durably before it
is delivered; a fresh cache folder per run, so nothing is a hit). Rounds are interleaved
(a, b, c, d, a, b, c, d, ...) so that load from other processes hits all alike; we report the median
tokens/s of each, its ratio to (a), and the ratio of (d) to (c): what the cache costs the openai
backend. Targets: (b) >= 0.95, (c) >= 0.8, (d)/(c) >= 0.95.

    python bench/teacher.py [--prompts 64] [--max-tokens 128] [--rounds 3] [--cache-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
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
        "--no-server", action="store_true", help="skip (c) and (d): compare raw vLLM and our backend only"
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where (d) keeps its caches: put it on the disk your runs use (default: the system temp dir)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) must still run the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import torch

    from pipeline.teachers import CachedTeacher, EngineOptions, Request, SamplingParams, TeacherConfig
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
    cache_root = Path(tempfile.mkdtemp(prefix="bench-teacher-cache-", dir=args.cache_dir))
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

        folders = itertools.count()

        def cached_remote() -> int:
            teacher = CachedTeacher(remote, cache_root / f"run{next(folders)}")
            out = teacher.generate(requests)
            assert not any(c.cached for c in out) and len(teacher.cache) == len(requests)
            return sum(c.completion_tokens for c in out)

        runs = {"a_raw_vllm": raw, "b_vllm_backend": lambda: backend(ours)}
        if not args.no_server:
            runs["c_openai_backend"] = lambda: backend(remote)
            runs["d_openai_cached"] = cached_remote
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
        shutil.rmtree(cache_root, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in rates.items()}
    base = medians["a_raw_vllm"]
    cache_ratio = (
        round(medians["d_openai_cached"] / medians["c_openai_backend"], 3) if not args.no_server else None
    )
    result = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "tokens_per_run": tokens,
        "tokens_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "median_tokens_per_s": {k: round(v, 1) for k, v in medians.items()},
        "ratio_to_raw": {k: round(v / base, 3) for k, v in medians.items()},
        "client_cpu_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "openai_cache_on_vs_off": cache_ratio,
        "targets": {"b_vllm_backend": 0.95, "c_openai_backend": 0.8, "openai_cache_on_vs_off": 0.95},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"CPU capability: {result['cpu_capability']}")
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
    if cache_ratio is not None:
        d_over_c = [d / c for c, d in zip(rates["c_openai_backend"], rates["d_openai_cached"], strict=True)]
        print(
            f"openai backend, cache on vs off: {cache_ratio:.3f} (target >=0.95; per round: "
            + ", ".join(f"{r:.3f}" for r in d_over_c)
            + ")"
        )
    print("note: shared machine; figures are noisy, ratios come from the same interleaved run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
