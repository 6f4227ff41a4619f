"""The whole self-instruct round: our pipelined rounds against the engine's raw throughput on the same requests.

For each dtype (one engine each, loaded and warmed up before the clock starts), runs `--rounds`
self-instruct rounds of `--batch-size` prompts through `run_generation` (the bundled model, the
`make generate` preset, a fixed seed, cache off) and records every request the rounds sent. Then
(a) replays exactly those requests with `LLM.generate` in one batch on the same engine: the engine's
raw throughput, with every request known up front; (b) is our rounds: completion tokens over round
wall time. Prints the ratio b/a (target >= 0.8), the idle share (the part of the rounds' wall time
in which the engine had no request to work on, from its step loop), and the round time of each dtype
side by side (bf16 vs fp32 on this CPU), with the CPU capability.

    python bench/generate.py [--rounds 2] [--batch-size 16] [--dtypes bfloat16,float32] [--replay all|first] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.teachers.base import Deliver, Request, RequestQueue, Teacher  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class _Tap:
    """The queue as the engine sees it (backends only `take`): every request handed out is noted."""

    def __init__(self, queue: RequestQueue, sent: list[Request]):
        self.queue = queue
        self.sent = sent

    def take(self) -> list[tuple[int, Request]]:
        new = self.queue.take()
        self.sent.extend(request for _, request in new)
        return new


class Recording(Teacher):
    """A teacher that passes everything to `inner` and keeps the requests it sent, in order."""

    def __init__(self, inner: Teacher):
        super().__init__(inner.identity, inner.usage)
        self.inner = inner
        self.structured_outputs = inner.structured_outputs
        self.sent: list[Request] = []

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        self.inner.stream(_Tap(queue, self.sent), deliver)  # type: ignore[arg-type]


def measure(dtype: str, args: argparse.Namespace, replay: bool) -> dict:
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig
    from pipeline.generate.protocol import run_generation
    from pipeline.teachers.base import SamplingParams
    from pipeline.teachers.vllm_local import VLLMTeacher, to_vllm_params

    overrides = {
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "time_budget": "none",
        "seed": args.seed,
        "teacher.cache": False,
        "teacher.engine.dtype": dtype,
    }
    config = load_config(REPO / "configs" / "default.yaml", GenerateConfig, overrides)
    engine = VLLMTeacher(config.teacher)
    t0 = time.perf_counter()
    engine.generate([Request(prompt="Warm-up:", params=SamplingParams(max_tokens=8, temperature=0.0))])
    load_s = time.perf_counter() - t0
    teacher = Recording(engine)
    try:
        before, busy_before = engine.usage.copy(), engine.engine_busy_s
        with tempfile.TemporaryDirectory(prefix="bench-generate-") as run_dir:
            outcome = run_generation(config, run_dir, teacher=teacher)
        assert outcome.summary is not None
        rows = outcome.summary.rounds
        wall = sum(row.wall_s for row in rows)
        spent = engine.usage.since(before)
        result = {
            "dtype": dtype,
            "engine_load_s": round(load_s, 1),
            "rounds_wall_s": round(wall, 1),
            "requests": spent.requests,
            "completion_tokens": spent.completion_tokens,
            "rounds_tokens_per_s": round(spent.completion_tokens / wall, 1),
            "kept": sum(row.kept for row in rows),
            "kept_per_min": round(60 * sum(row.kept for row in rows) / wall, 1),
            "idle_share": round(1 - (engine.engine_busy_s - busy_before) / wall, 3),
        }
        if replay:
            if any(r.is_chat for r in teacher.sent):
                raise SystemExit("the replay covers completion-style requests only")
            t0 = time.perf_counter()
            outputs = engine.llm.generate(
                [r.prompt for r in teacher.sent],
                [to_vllm_params(r.params) for r in teacher.sent],
                use_tqdm=False,
            )
            replay_s = time.perf_counter() - t0
            tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
            result.update(
                replay_requests=len(teacher.sent),
                replay_completion_tokens=tokens,
                replay_s=round(replay_s, 1),
                replay_tokens_per_s=round(tokens / replay_s, 1),
                ratio=round(result["rounds_tokens_per_s"] / (tokens / replay_s), 3),
            )
    finally:
        engine.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dtypes", default="bfloat16,float32", help="comma-separated; one engine each")
    parser.add_argument(
        "--replay", choices=["first", "all"], default="first", help="replay the requests for these dtypes"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` still shuts the engine down

    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    results = [measure(d, args, replay=args.replay == "all" or k == 0) for k, d in enumerate(dtypes)]
    if args.json:
        print(json.dumps({"cpu_capability": capability, "results": results}, indent=2))
        return 0
    print(f"cpu capability: {capability}")
    print(
        f"{args.rounds} self-instruct rounds x {args.batch_size} prompts, seed {args.seed}, cache off, bundled model"
    )
    print(
        f"{'dtype':10} {'round s':>8} {'requests':>8} {'tokens':>7} {'tok/s':>7} {'kept':>5} {'kept/min':>8} {'idle':>6}"
    )
    for r in results:
        print(
            f"{r['dtype']:10} {r['rounds_wall_s']:8.1f} {r['requests']:8d} {r['completion_tokens']:7d} "
            f"{r['rounds_tokens_per_s']:7.1f} {r['kept']:5d} {r['kept_per_min']:8.1f} {r['idle_share']:6.1%}"
        )
    for r in results:
        if "ratio" in r:
            print(
                f"{r['dtype']}: replay of the same {r['replay_requests']} requests with LLM.generate in one batch: "
                f"{r['replay_completion_tokens']} tokens in {r['replay_s']:.1f} s = {r['replay_tokens_per_s']:.1f} tok/s; "
                f"rounds/replay = {r['ratio']:.2f} (target >= 0.8)"
            )
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            print(
                f"round time {base['dtype']} {base['rounds_wall_s']:.1f} s vs {r['dtype']} {r['rounds_wall_s']:.1f} s "
                f"({r['dtype']}/{base['dtype']} = {r['rounds_wall_s'] / base['rounds_wall_s']:.2f})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
