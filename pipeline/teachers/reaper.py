"""Reap vLLM's engine processes when the process that started them dies, even by SIGKILL.

vLLM's EngineCore does not watch its parent: after `kill -9` of a run, the engine core and its
worker keep computing as orphans, holding memory and cores while the resumed run starts a new
engine. A tiny detached watchdog polls the process that started it; once that is gone it kills the
processes it was given, each matched by pid and start time so that a reused pid is never hit. It ends
by itself when they all end first (an engine shut down normally).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

POLL_S = 0.5


def guard_descendants() -> int | None:
    """Start a watchdog over every current descendant of this process; its pid, or None if there are none.

    The watchdog is detached (a grandchild, not our child): it must outlive this process, and a child
    still running at our exit would be a `Popen` warning "still running" and a zombie once it ends.
    """
    me = psutil.Process()
    targets = [f"{p.pid}:{p.create_time()!r}" for p in me.children(recursive=True)]
    if not targets:
        return None
    launcher = subprocess.run(
        [sys.executable, "-m", "pipeline.teachers.reaper", f"{me.pid}:{me.create_time()!r}", *targets],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,  # a Ctrl-C to the run's process group must not kill the watchdog first
        check=True,
    )
    return int(launcher.stdout)


def _alive(pid: int, started: float) -> bool:
    """The process `pid` runs and is the one that started at `started` (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 1e-3 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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


def watch(parent: tuple[int, float], targets: list[tuple[int, float]]) -> None:
    """Wait while the parent runs and a target is left; once the parent is gone, kill the targets."""
    while _alive(*parent):
        if not any(_alive(*target) for target in targets):
            return  # the engine was shut down normally: nothing is left to guard
        time.sleep(POLL_S)
    reap(targets)


def _pid_time(item: str) -> tuple[int, float]:
    pid, started = item.split(":", 1)
    return int(pid), float(started)


def main(argv: list[str]) -> int:
    parent, *targets = (_pid_time(item) for item in argv)
    watchdog = os.fork()
    if watchdog:  # the launcher: say who watches, and exit so that the watchdog is nobody's child
        print(watchdog, flush=True)
        return 0
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # let go of the launcher's pipe, so that its reader sees the end
        os.dup2(devnull, fd)
    watch(parent, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
