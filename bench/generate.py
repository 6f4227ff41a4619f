"""The whole self-instruct round: our pipelined rounds against the engine's raw throughput on the same requests.

For each dtype (one engine each, loaded and warmed up before the clock starts), runs `--rounds`
self-instruct rounds of `--batch-size` prompts through `run_generation` (the bundled model, the
`make generate` preset, a fixed seed, cache off) once per `--overlap` setting (rounds one at a time,
then overlapping), recording every request the rounds sent. Then (a) replays exactly those requests
with `LLM.generate` in one batch on the same engine: the engine's raw throughput, with every request
known up front; (b) is our rounds: the completion tokens of the answers they used over round wall
time (a wrong guess of an overlapping round is in (a)'s work, not in (b)'s). Prints the ratio b/a
(target >= 0.9), the idle share (the part of the rounds' wall time in which the engine had no request
to work on, from its step loop), guesses used/asked, whether both settings kept the same tasks, and
the CPU capability.

    python bench/generate.py [--rounds 4] [--batch-size 16] [--dtypes auto] [--overlap off,on] [--replay all|first] [--json]
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
    """The queue as the engine sees it: every request handed out is noted, and which were cancelled."""

    def __init__(self, queue: RequestQueue, sent: dict[tuple[int, int], Request], call: int):
        self.queue = queue
        self.sent = sent
        self.call = call

    def take(self) -> list[tuple[int, Request]]:
        new = self.queue.take()
        self.sent.update(((self.call, i), request) for i, request in new)
        return new

    def take_cancelled(self) -> list[int]:
        gone = self.queue.take_cancelled()
        for i in gone:
            self.sent.pop((self.call, i), None)  # aborted early: not part of the work replayed
        return gone


class Recording(Teacher):
    """A teacher that passes everything to `inner` and keeps the requests it sent, in order."""

    def __init__(self, inner: Teacher):
        super().__init__(inner.identity, inner.usage)
        self.inner = inner
        self.structured_outputs = inner.structured_outputs
        self.cancels = inner.cancels
        self.capacity = inner.capacity
        self._sent: dict[tuple[int, int], Request] = {}
        self._calls = 0

    @property
    def sent(self) -> list[Request]:
        """Every request the engine was given and not aborted, in order."""
        return list(self._sent.values())

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        self._calls += 1
        self.inner.stream(_Tap(queue, self._sent, self._calls), deliver)  # type: ignore[arg-type]


def _rounds(engine, config, overlap: str) -> tuple[dict, list[Request]]:
    """Run the rounds once (overlap on or off) on a warm engine; their figures and every request sent."""
    from pipeline.generate.protocol import run_generation
    from pipeline.run.rundir import RunDir

    teacher = Recording(engine)
    before, busy_before = engine.usage.copy(), engine.engine_busy_s
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as run_dir:
        outcome = run_generation(
            config.model_copy(update={"overlap_rounds": overlap}), run_dir, teacher=teacher
        )
        tasks = [(t.id, t.instruction) for t in RunDir(run_dir).read_tasks()]
    assert outcome.summary is not None
    rows = outcome.summary.rounds
    wall = sum(row.wall_s for row in rows)
    used = sum(row.completion_tokens for row in rows)  # the answers the rounds used, not wrong guesses
    spent = engine.usage.since(before)
    kept = sum(row.kept for row in rows)
    return {
        "overlap": overlap,
        "rounds_wall_s": round(wall, 1),
        "requests": sum(row.requests for row in rows),
        "sent": spent.requests,
        "guessed": sum(row.guessed_requests for row in rows),
        "guesses_used": sum(row.guesses_used for row in rows),
        "completion_tokens": used,
        "sent_tokens": spent.completion_tokens,
        "rounds_tokens_per_s": round(used / wall, 1),
        "kept": kept,
        "kept_per_min": round(60 * kept / wall, 1),
        "idle_share": round(max(0.0, 1 - (engine.engine_busy_s - busy_before) / wall), 3),
        "tasks": tasks,
    }, teacher.sent


def _replay(engine, sent: list[Request]) -> dict:
    """Every request the rounds sent (wrong guesses included) in one `LLM.generate` batch."""
    from pipeline.teachers.vllm_local import to_vllm_params

    if any(r.is_chat for r in sent):
        raise SystemExit("the replay covers completion-style requests only")
    t0 = time.perf_counter()
    outputs = engine.llm.generate(
        [r.prompt for r in sent], [to_vllm_params(r.params) for r in sent], use_tqdm=False
    )
    replay_s = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
    return {
        "replay_requests": len(sent),
        "replay_completion_tokens": tokens,
        "replay_s": round(replay_s, 1),
        "replay_tokens_per_s": round(tokens / replay_s, 1),
    }


def measure(dtype: str, args: argparse.Namespace, replay: bool) -> list[dict]:
    """One warm engine per dtype: the rounds with each overlap setting, then the replay of what the
    overlapped rounds sent. The ratio is useful tokens per second of the rounds (the answers they used)
    over the replay's raw tokens per second of everything they sent, so a wrong guess counts against us."""
    from pipeline.core.yamlconfig import load_config
    from pipeline.generate.config import GenerateConfig
    from pipeline.teachers.base import SamplingParams
    from pipeline.teachers.vllm_local import VLLMTeacher

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
    results = []
    try:
        for overlap in [m.strip() for m in args.overlap.split(",") if m.strip()]:
            result, sent = _rounds(engine, config, overlap)
            result.update(dtype=dtype, engine_load_s=round(load_s, 1))
            if replay:
                result.update(_replay(engine, sent))
                result["ratio"] = round(result["rounds_tokens_per_s"] / result["replay_tokens_per_s"], 3)
            results.append(result)
    finally:
        engine.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dtypes", default="auto", help="comma-separated; one engine each")
    parser.add_argument(
        "--overlap", default="off,on", help="overlap_rounds settings to run, on the same engine"
    )
    parser.add_argument(
        "--replay", choices=["first", "all"], default="first", help="replay the requests for these dtypes"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` still shuts the engine down

    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    results = [
        r for k, d in enumerate(dtypes) for r in measure(d, args, replay=args.replay == "all" or k == 0)
    ]
    same = len({tuple(r["tasks"]) for r in results if r["dtype"] == results[0]["dtype"]}) == 1
    for r in results:
        r.pop("tasks")
    if args.json:
        print(json.dumps({"cpu_capability": capability, "results": results, "same_tasks": same}, indent=2))
        return 0
    print(f"cpu capability: {capability}")
    print(
        f"{args.rounds} self-instruct rounds x {args.batch_size} prompts, seed {args.seed}, cache off, bundled model"
    )
    print(
        f"{'dtype':9} {'overlap':7} {'round s':>8} {'used':>5} {'sent':>5} {'guess':>9} {'tokens':>7} "
        f"{'tok/s':>7} {'kept':>5} {'kept/min':>8} {'idle':>6} {'replay':>7} {'ratio':>6}"
    )
    for r in results:
        print(
            f"{r['dtype']:9} {r['overlap']:7} {r['rounds_wall_s']:8.1f} {r['requests']:5d} {r['sent']:5d} "
            f"{r['guesses_used']:4d}/{r['guessed']:<4d} {r['completion_tokens']:7d} {r['rounds_tokens_per_s']:7.1f} "
            f"{r['kept']:5d} {r['kept_per_min']:8.1f} {r['idle_share']:6.1%} "
            f"{r.get('replay_tokens_per_s', 0):7.1f} {r.get('ratio', 0):6.2f}"
        )
    print(
        "ratio: the rounds' useful tok/s (answers they used) over the replay of every request they sent "
        "(wrong guesses included) in one LLM.generate batch on the same engine (target >= 0.9)"
    )
    print(
        f"same kept tasks with overlap off and on: {same} (the bundled model's answer to a seeded request "
        "changes with the batch it runs in, so on this engine any change of batching changes texts; "
        "tests/test_rounds.py holds the decisions equal on a deterministic teacher)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
