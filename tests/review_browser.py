"""Helpers for the review page's tests: the real `selfinstruct review` server in a subprocess, and
Playwright driving Debian's chromium (Playwright's own browser download is not used)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.teachers.server import free_port

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    if CHROMIUM is None:
        pytest.fail(
            "Debian's chromium is not installed (`make browser` installs it): the review page is untested"
        )
    return CHROMIUM


@contextmanager
def review_server(run_dir: Path, *args: str) -> Iterator[tuple[subprocess.Popen, dict[str, str]]]:
    """`selfinstruct review RUN_DIR ARGS` on a free port; yields the process and each reviewer's URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "pipeline.cli", "review", str(run_dir), "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    urls: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.match(r"review page for (\S+): (http://\S+)", line)
            if match:
                urls[match.group(1)] = match.group(2)
            if "Ctrl-C stops" in line or (urls and "--quiet" in args):
                break
        assert urls, "the review server printed no URL:\n" + "".join(lines)
        _wait_listening(port)
        yield proc, urls
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_listening(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
