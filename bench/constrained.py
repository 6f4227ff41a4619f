"""Constrained vs free decoding: both recipes, the same seeds and rounds, on one engine (issue 15).

For each recipe (Self-Instruct, Alpaca) the same run (seed, rounds, batch size, prompts) is made twice on
the bundled teacher, in-process, with `decoding.constrained: off` and `on`, and compared: kept tasks,
kept tasks per request and per 1,000 completion tokens, the rejection reasons (the `parse_*` ones
apart), and the teacher's time per completion token (the grammar's overhead). The engine and the
grammar backend are warmed up first; free and constrained runs alternate so that load from other
processes hits both alike. Targets: the Alpaca recipe keeps at
least 5 tasks per request, `parse_*` rejections fall to near zero for both recipes, and time per token
rises by at most 30%.

    python bench/constrained.py [--rounds 1] [--batch-size 8] [--dtype float32] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_once(teacher: Any, method: str, mode: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.protocol import run_generation
    from pipeline.run.rundir import RunDir

    config = GenerateConfig(
        method=method,
        rounds=args.rounds,
        batch_size=args.batch_size,
        seed=args.seed,
        teacher={"backend": "vllm", "model": args.model, "cache": False},
    )
    decoding = config.decoding.model_copy(update={"constrained": mode})
    config = config.model_copy(update={"decoding": decoding})
    run_dir = root / f"{method}-{mode}"
    started = time.perf_counter()
    outcome = run_generation(config, run_dir, teacher=teacher)
    wall = time.perf_counter() - started
    summary = outcome.summary
    totals = summary.totals
    reasons = Counter(code for r in RunDir(run_dir).read_rejections() for code in r.reasons)
    requests, tokens, kept = totals.requests, totals.completion_tokens, summary.kept_total
    first_batch = args.rounds * args.batch_size
    return {
        "method": method,
        "constrained": mode,
        "applied": summary.constrained_decoding.applied,
        "requests": requests,
        "recipe_requests": first_batch,
        "completion_tokens": tokens,
        "kept": kept,
        "kept_per_recipe_request": round(kept / first_batch, 2),
        "kept_per_1k_tokens": round(1000 * kept / tokens, 2) if tokens else 0.0,
        "parse_rejections": sum(n for code, n in reasons.items() if code.startswith("parse_")),
        "rejections": dict(reasons.most_common()),
        "teacher_s": round(totals.seconds, 1),
        "ms_per_token": round(1000 * totals.seconds / tokens, 2) if tokens else 0.0,
        "wall_s": round(wall, 1),
    }


def warm_up(teacher: Any) -> None:
    """Load the engine and the grammar backend before any clock starts (the first run would pay both)."""
    from pipeline.teachers.base import Request, SamplingParams, Structured

    free = SamplingParams(temperature=0.0, max_tokens=8)
    held = SamplingParams(temperature=0.0, max_tokens=8, structured=Structured(choice=("Yes", "No")))
    teacher.generate([Request(prompt="Is the sky blue?", params=free), Request(prompt="Is it?", params=held)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="instruction prompts per round")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", default="bundled")
    parser.add_argument(
        "--dtype", default="auto", help="the engine's dtype (auto: the CPU's rule; issue 15 measured float32)"
    )
    parser.add_argument(
        "--methods", default="self-instruct,alpaca", help="comma-separated: self-instruct, alpaca"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import torch

    from pipeline.teachers import EngineOptions, TeacherConfig
    from pipeline.teachers.vllm_local import VLLMTeacher

    capability = torch.backends.cpu.get_cpu_capability()
    engine = EngineOptions(
        dtype=args.dtype, max_model_len=4096, gpu_memory_utilization=0.3, enforce_eager=True
    )
    teacher = VLLMTeacher(TeacherConfig(backend="vllm", model=args.model, cache=False, engine=engine))
    args.dtype = teacher.identity.dtype or args.dtype  # as resolved for this machine
    warm_up(teacher)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-constrained-") as tmp:
            for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
                for mode in ("off", "on"):
                    results.append(run_once(teacher, method, mode, args, Path(tmp)))
                    print(f"# done: {method} constrained={mode}", file=sys.stderr, flush=True)
    finally:
        teacher.close()

    comparisons = {}
    for method in {r["method"] for r in results}:
        free = next(r for r in results if r["method"] == method and r["constrained"] == "off")
        held = next(r for r in results if r["method"] == method and r["constrained"] == "on")
        comparisons[method] = {
            "kept_per_1k_tokens_ratio": round(held["kept_per_1k_tokens"] / free["kept_per_1k_tokens"], 2)
            if free["kept_per_1k_tokens"]
            else None,
            "time_per_token_ratio": round(held["ms_per_token"] / free["ms_per_token"], 2)
            if free["ms_per_token"]
            else None,
        }
    report = {
        "cpu_capability": capability,
        "dtype": args.dtype,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "runs": results,
        "constrained_vs_free": comparisons,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"CPU capability: {capability}; dtype {args.dtype}; {args.rounds} round(s) of {args.batch_size} prompts"
    )
    header = (
        f"{'recipe':14} {'decoding':11} {'requests':>8} {'tokens':>7} {'kept':>5} {'kept/req':>8} "
        f"{'kept/1k tok':>11} {'parse_*':>7} {'ms/token':>8}"
    )
    print(header)
    for r in results:
        print(
            f"{r['method']:14} {('constrained' if r['constrained'] == 'on' else 'free'):11} {r['requests']:>8} "
            f"{r['completion_tokens']:>7} {r['kept']:>5} {r['kept_per_recipe_request']:>8} "
            f"{r['kept_per_1k_tokens']:>11} {r['parse_rejections']:>7} {r['ms_per_token']:>8}"
        )
    for r in results:
        top = ", ".join(f"{k} {v}" for k, v in list(r["rejections"].items())[:6]) or "-"
        print(f"  {r['method']} {r['constrained']}: {top}")
    for method, c in comparisons.items():
        print(
            f"{method}: constrained/free kept per 1k tokens x{c['kept_per_1k_tokens_ratio']}, "
            f"time per token x{c['time_per_token_ratio']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
