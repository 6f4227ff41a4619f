"""`selfinstruct` with a crash point armed, for the kill tests: `python -m tests.crashing_cli POINT[@ROUND] ARGS...`.

The hook is injected through the click context (the CLI reads no environment for it): when the run
reaches the named point (in that round, if given) the process ends at once with `os._exit`, exactly
like a kill, leaving the files as they are. `torn_append` also leaves half a line at the end of
machine_tasks.jsonl first, as a kill in the middle of the append would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.cli import main
from pipeline.generate.protocol import CRASH_POINTS

CRASH_EXIT_CODE = 137
TORN_APPEND = "torn_append"
REPO = Path(__file__).resolve().parents[1]


def crash_hook(spec: str, run_dir: Path):
    point, _, at = spec.partition("@")
    target = "before_append" if point == TORN_APPEND else point
    if target not in CRASH_POINTS:
        raise SystemExit(f"unknown crash point {point!r}; known: {', '.join(CRASH_POINTS)}, {TORN_APPEND}")

    def hook(name: str, round_no: int) -> None:
        if name != target or (at and int(at) != round_no):
            return
        if point == TORN_APPEND:
            with (run_dir / "machine_tasks.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(f'{{"id": "r{round_no:04d}-0000", "instruction": "cut short by the kil')
        os._exit(CRASH_EXIT_CODE)

    return hook


def generate_cli(
    config: Path,
    run_dir: Path,
    key: str,
    *args: str,
    crash: str | None = None,
    popen: bool = False,
    timeout: float = 300,
) -> subprocess.CompletedProcess | subprocess.Popen:
    """`selfinstruct generate --quiet` in a process of its own against a fake teacher keyed by
    $SI_FAKE_KEY=`key`; with `crash`, through this module so the process ends at that point."""
    env = {**os.environ, "SI_FAKE_KEY": key}
    entry = ["tests.crashing_cli", crash] if crash else ["pipeline.cli"]
    cmd = [sys.executable, "-m", *entry, "generate", "--config", str(config), "--run-dir", str(run_dir)]
    cmd += ["--quiet", *args]
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


if __name__ == "__main__":
    spec, args = sys.argv[1], sys.argv[2:]
    run_dir = Path(args[args.index("--run-dir") + 1])
    main.main(args=args, prog_name="selfinstruct", obj={"crash_hook": crash_hook(spec, run_dir)})
