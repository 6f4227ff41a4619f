"""A run killed with SIGKILL leaves no engine behind: the reaper ends the processes it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from pipeline.teachers.reaper import reap


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = pids
    while time.monotonic() < deadline:
        alive = [
            p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            break
        time.sleep(0.2)
    return alive


def _run_and_kill(script: str, timeout_s: float) -> list[int]:
    """Run `script` (which prints its children's pids, then waits), SIGKILL it, return those pids."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        line = proc.stdout.readline()
        pids = [int(x) for x in line.split()]
        assert pids, "the script started no child"
        assert all(psutil.pid_exists(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return pids


def test_children_of_a_sigkilled_parent_are_reaped():
    script = textwrap.dedent(
        """
        import subprocess, sys, time, psutil
        from pipeline.teachers.reaper import guard_descendants
        kids = [subprocess.Popen(["sleep", "120"]) for _ in range(2)]
        guard_descendants()
        print(" ".join(str(k.pid) for k in kids), flush=True)
        time.sleep(120)
        """
    )
    pids = _run_and_kill(script, 30)
    assert _wait_gone(pids, 15) == []


def test_a_normal_exit_reaps_too_and_warns_of_nothing():
    """The watchdog is nobody's child: the run's exit leaves no "still running" warning, and its
    children are still ended once it has gone."""
    script = textwrap.dedent(
        """
        import os
        from pipeline.teachers.reaper import guard_descendants
        kid = os.posix_spawn("/bin/sleep", ["sleep", "120"], os.environ)
        watchdog = guard_descendants()
        print(kid, watchdog, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "always", "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr
    assert "still running" not in done.stderr and "ResourceWarning" not in done.stderr
    kid, watchdog = (int(x) for x in done.stdout.split())
    assert _wait_gone([kid, watchdog], 15) == []


def test_the_watchdog_ends_when_what_it_guards_ends_first():
    """An engine shut down normally leaves no watchdog polling for the rest of the process's life.

    In a process of its own: a watchdog guards every descendant, and pytest may have others."""
    script = textwrap.dedent(
        """
        import subprocess, time, psutil
        from pipeline.teachers.reaper import guard_descendants
        kid = subprocess.Popen(["sleep", "120"])
        watchdog = guard_descendants()
        children = [p.pid for p in psutil.Process().children(recursive=True)]
        print(watchdog, int(watchdog in children), flush=True)
        kid.kill()
        kid.wait()
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        watchdog, is_child = (int(x) for x in proc.stdout.readline().split())
        assert not is_child
        assert _wait_gone([watchdog], 15) == []
        assert proc.poll() is None  # it ended with its target, while the process that started it runs
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_reap_skips_a_reused_pid():
    """A pid whose start time differs from the recorded one belongs to someone else: leave it."""
    me = psutil.Process()
    assert reap([(me.pid, me.create_time() - 100.0)]) == 0
    assert psutil.pid_exists(me.pid)


@pytest.mark.engine
def test_a_sigkilled_run_leaves_no_vllm_engine_behind():
    script = textwrap.dedent(
        """
        import time, psutil
        from pipeline.teachers import EngineOptions
        from pipeline.teachers.vllm_local import build_llm
        llm = build_llm("bundled", EngineOptions(max_model_len=1024, gpu_memory_utilization=0.3, kv_cache_memory_gib=0.5))
        kids = [p.pid for p in psutil.Process().children(recursive=True) if "reaper" not in " ".join(p.cmdline())]
        print(" ".join(map(str, kids)), flush=True)
        time.sleep(300)
        """
    )
    pids = _run_and_kill(script, 300)
    assert _wait_gone(pids, 30) == []
