"""The four generation methods on one yardstick (issue 23): self-instruct, alpaca, evol-instruct, magpie.

Each method runs one round from its own preset (configs/default.yaml, alpaca.yaml, evol.yaml,
magpie.yaml) with the same number of opening teacher requests (`--batch-size`), the same run seed, on
one in-process engine of the bundled teacher (cache off). What follows from a reply (self-instruct's
classification and instance requests, the answers of evol-instruct and magpie) is what the method
asks for, so total requests differ; kept tasks per 1,000 completion tokens is the cost-fair figure.
Printed per method: teacher requests, completion tokens, kept tasks, kept per request and per 1,000
completion tokens, the share of kept instances with a non-empty input, the rejection reasons, and the
ratio of kept and of kept per 1,000 tokens to the self-instruct baseline measured in the same run.

    python bench/methods.py [--batch-size 32] [--seed 42] [--turns 1] [--out DIR] [--json]

With `--out DIR` the four run directories stay there (for review, export, report), each with its teacher
cache, and a rerun with the same `--out` continues: a method whose round is committed is read back, not
run again, and a round cut short (say by a time limit) resumes from its cache. Tokens and requests are
counted from the round's cache, so a resumed round counts every request once, whoever paid for it.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRESETS = {
    "self-instruct": "configs/default.yaml",
    "alpaca": "configs/alpaca.yaml",
    "evol-instruct": "configs/evol.yaml",
    "magpie": "configs/magpie.yaml",
}
BASELINE = "self-instruct"


def run_method(teacher: Any, method: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.protocol import run_generation
    from pipeline.run.reader import Run

    overrides = {
        "rounds": 1,
        "until": None,
        "time_budget": "none",
        "batch_size": args.batch_size,
        "seed": args.seed,
        "teacher.cache": True,
        "magpie.turns": args.turns if method == "magpie" else None,
    }
    config = load_config(REPO / PRESETS[method], GenerateConfig, overrides)
    run_dir = root / method
    started = time.perf_counter()
    state = Run(run_dir).read_state() if run_dir.exists() else None
    if state is None or state.rounds_done < 1:
        run_generation(config, run_dir, teacher=teacher)
    wall = time.perf_counter() - started
    return figures(Run.open(run_dir), method, config.prompt_style, args.batch_size, wall)


def _paid(run: Any) -> tuple[int, int]:
    """(requests, completion tokens) of the run: from its cache (each request once, also across a
    resume), or from summary.json for a run made without one."""
    cache = run.cache_dir / "teacher.jsonl"
    if cache.is_file():
        rows = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines() if line.strip()]
        return len(rows), sum(int(r["completion"]["completion_tokens"]) for r in rows)
    totals = run.summary().totals
    return totals.requests, totals.completion_tokens


def figures(run: Any, method: str, style: str, opening: int, wall: float) -> dict[str, Any]:
    tasks = run.committed_tasks()
    reasons = Counter(code for r in run.read_rejections() for code in r.reasons)
    instances = [i for t in tasks for i in t.instances]
    kept = len(tasks)
    requests, tokens = _paid(run)
    return {
        "method": method,
        "preset": PRESETS[method],
        "prompt_style": style,
        "opening_requests": opening,
        "requests": requests,
        "completion_tokens": tokens,
        "candidates": sum(row.candidates for row in run.summary().rounds),
        "kept": kept,
        "kept_per_request": round(kept / requests, 3) if requests else 0.0,
        "kept_per_1k_tokens": round(1000 * kept / tokens, 2) if tokens else 0.0,
        "non_empty_input_share": round(sum(bool(i.input.strip()) for i in instances) / len(instances), 3)
        if instances
        else 0.0,
        "rejections": dict(reasons.most_common()),
        "teacher_s": round(run.summary().totals.seconds, 1),
        "wall_s": round(wall, 1),
        "run_dir": str(run.path),
    }


def warm_up(teacher: Any) -> None:
    """Load the engine before any clock starts (the first method would pay for it)."""
    from pipeline.teachers.base import Request, SamplingParams

    teacher.generate([Request(prompt="Name a colour.", params=SamplingParams(temperature=0.0, max_tokens=8))])


def cpu_line() -> str:
    import torch

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return (
        f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; "
        f"avx512_bf16 in /proc/cpuinfo: {'yes' if 'avx512_bf16' in flags else 'no'}"
    )


def ratios(results: list[dict[str, Any]]) -> None:
    base = next(r for r in results if r["method"] == BASELINE)
    for r in results:
        r["kept_ratio"] = round(r["kept"] / base["kept"], 2) if base["kept"] else None
        r["kept_per_1k_tokens_ratio"] = (
            round(r["kept_per_1k_tokens"] / base["kept_per_1k_tokens"], 2)
            if base["kept_per_1k_tokens"]
            else None
        )


def print_table(report: dict[str, Any]) -> None:
    print(report["cpu"])
    print(
        f"dtype {report['dtype']}; one round per method, {report['batch_size']} opening requests each, "
        f"seed {report['seed']}; magpie with {report['turns']} turn(s)"
    )
    print(
        f"{'method':14} {'requests':>8} {'tokens':>7} {'kept':>5} {'kept/req':>8} {'kept/1k tok':>11} "
        f"{'input>0':>7} {'kept x':>6} {'/1k x':>6} {'teacher s':>9}"
    )
    for r in report["runs"]:
        print(
            f"{r['method']:14} {r['requests']:>8} {r['completion_tokens']:>7} {r['kept']:>5} "
            f"{r['kept_per_request']:>8} {r['kept_per_1k_tokens']:>11} {r['non_empty_input_share']:>7.0%} "
            f"{r['kept_ratio']!s:>6} {r['kept_per_1k_tokens_ratio']!s:>6} {r['teacher_s']:>9}"
        )
    print(f"(kept x, /1k x: ratio to the {BASELINE} baseline of this run)")
    for r in report["runs"]:
        top = ", ".join(f"{k} {v}" for k, v in list(r["rejections"].items())[:8]) or "-"
        print(f"  {r['method']}: {top}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="opening requests of each method's round")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--turns", type=int, default=1, help="magpie's turns per conversation")
    parser.add_argument(
        "--methods", default=",".join(PRESETS), help="comma-separated, from: " + ", ".join(PRESETS)
    )
    parser.add_argument(
        "--out", default=None, help="keep the run directories in this folder; rerun with it to continue"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in PRESETS]
    if unknown or BASELINE not in methods:
        parser.error(f"--methods: unknown {unknown}" if unknown else f"--methods must include {BASELINE}")

    from pipeline.teachers import EngineOptions, TeacherConfig
    from pipeline.teachers.vllm_local import VLLMTeacher

    engine = EngineOptions(max_model_len=4096, gpu_memory_utilization=0.3, enforce_eager=True)
    teacher = VLLMTeacher(TeacherConfig(backend="vllm", model="bundled", cache=False, engine=engine))
    warm_up(teacher)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-methods-") as tmp:
            root = Path(args.out) if args.out else Path(tmp)
            root.mkdir(parents=True, exist_ok=True)
            for method in methods:
                results.append(run_method(teacher, method, args, root))
                print(f"# done: {method} ({results[-1]['wall_s']} s)", file=sys.stderr, flush=True)
    finally:
        teacher.close()
    ratios(results)
    report = {
        "cpu": cpu_line(),
        "dtype": teacher.identity.dtype,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "turns": args.turns,
        "runs": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
