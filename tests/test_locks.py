"""One writer per run directory: a second generate or judge is refused clearly; a killed one frees the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pipeline.core.errors import UserError
from pipeline.core.locks import exclusive_lock
from pipeline.judge.runner import judge_lock
from pipeline.run.rundir import RunDir


def test_a_second_holder_is_refused_and_the_lock_is_free_again_afterwards(tmp_path):
    path = tmp_path / ".lock"
    with exclusive_lock(path, "busy here"):
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(UserError, match="^busy here$"), exclusive_lock(path, "busy here"):
            pass
    with exclusive_lock(path, "busy here"):  # released on exit
        pass


def test_generate_and_judge_name_what_holds_the_run(tmp_path):
    run = RunDir(tmp_path / "run")
    busy = pytest.raises(UserError, match="another `selfinstruct generate` is running")
    with run.locked(), busy, run.locked():
        pass
    busy = pytest.raises(UserError, match="another judge is running")
    with judge_lock(tmp_path / "run"), busy, judge_lock(tmp_path / "run"):
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / ".lock"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom pipeline.core.locks import exclusive_lock\n"
        "with exclusive_lock(Path(sys.argv[1]), 'busy'):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError), exclusive_lock(path, "busy"):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
    with exclusive_lock(path, "busy"):  # the kernel released the dead holder's lock
        assert path.read_text() == f"{os.getpid()}\n"
