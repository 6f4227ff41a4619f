"""Reap vLLM's engine processes when the process that started them dies, even by SIGKILL.

vLLM's EngineCore does not watch its parent: after `kill -9` of a run, the engine core and its
worker keep computing as orphans, holding memory and cores while the resumed run starts a new
engine. A tiny watchdog child polls its parent; once the parent is gone it kills the processes it
was given, each matched by pid and start time so that a reused pid is never hit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

POLL_S = 0.5
# Held for the life of the process: a dropped Popen of a running child warns "still running".
_WATCHDOGS: list[subprocess.Popen] = []


def guard_descendants() -> subprocess.Popen | None:
    """Start a watchdog over every current descendant of this process; None if there are none."""
    targets = [f"{p.pid}:{p.create_time()!r}" for p in psutil.Process().children(recursive=True)]
    if not targets:
        return None
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "pipeline.teachers.reaper", str(os.getpid()), *targets],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the run's process group must not kill the watchdog first
    )
    _WATCHDOGS.append(watchdog)
    return watchdog


def reap(targets: list[tuple[int, float]]) -> int:
    """Kill the target processes that still run; return how many were killed."""
    killed = 0
    for pid, started in targets:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 1e-3:
                proc.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed


def main(argv: list[str]) -> int:
    parent = int(argv[0])
    targets = [(int(pid), float(started)) for pid, started in (item.split(":", 1) for item in argv[1:])]
    while psutil.pid_exists(parent) and os.getppid() == parent:
        time.sleep(POLL_S)
    reap(targets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
