"""Where a vLLM engine runs, shared by the in-process teacher, `serve` and `evaluate`.

Nothing here writes our own process's global state for longer than it must: the engine's
environment is handed to the engine's processes (`env=` for the server; for the in-process engine,
whose core is a child process started inside `vllm.LLM(...)`, only for the duration of that call,
see `scoped_environ`), and vLLM's own log lines go to a file through vLLM's `logging_config`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.jsonio import write_json_atomic
from pipeline.core.model import (
    BUNDLED_ALIASES,
    BUNDLED_NAME,
    bundled_fingerprint,
    cache_root,
    model_fingerprint,
)
from pipeline.run.schemas import TeacherIdentity
from pipeline.teachers.config import TeacherConfig
from pipeline.teachers.engine import DtypeChoice, Machine, choose_dtype

ENGINE_LOG = Path("logs") / "engine.log"
"""Where a run directory keeps vLLM's own log lines."""
LOG_FORMAT = "%(levelname)s %(asctime)s [pid %(process)d] %(name)s: %(message)s"


def engine_env(model_path: str, machine: Machine) -> dict[str, str]:
    """Environment defaults the engine's processes need; a variable the user already set is left out."""
    root = cache_root()
    env = {"VLLM_CACHE_ROOT": str(root / "vllm"), "TOKENIZERS_PARALLELISM": "false"}
    if Path(model_path).is_dir():
        # A local folder needs nothing from the Hub; offline mode avoids slow network probes.
        env["HF_HUB_OFFLINE"] = "1"
    if not machine.cuda:
        # Reserving a core for the scheduler halved throughput on small machines.
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        tmp = root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp)
    return {key: value for key, value in env.items() if key not in os.environ}


@contextlib.contextmanager
def scoped_environ(updates: Mapping[str, str]) -> Iterator[None]:
    """`updates` in os.environ for the block only; afterwards the environment is exactly as before.

    vLLM's engine core is a child process that `vllm.LLM(...)` starts and that inherits our
    environment; there is no other way to hand it variables, so they exist for exactly that call.
    The whole environment is restored, because vLLM's CPU platform also writes variables meant for
    its own children while the engine starts (VLLM_WORKER_MULTIPROC_METHOD, LD_PRELOAD, ...).
    """
    saved = dict(os.environ)
    os.environ.update(updates)
    try:
        yield
    finally:
        if dict(os.environ) != saved:
            os.environ.clear()
            os.environ.update(saved)


@dataclass(frozen=True)
class EngineLog:
    """Where vLLM's own log lines go: always to `path`, to the terminal (stderr) too when `verbose`."""

    path: Path
    verbose: bool = False

    @classmethod
    def default(cls) -> EngineLog:
        """For an engine outside a run directory (evaluate without --out, tests, benchmarks)."""
        return cls(cache_root() / ENGINE_LOG)

    def dict_config(self) -> dict[str, Any]:
        """A `logging.config.dictConfig` for the `vllm` logger only (our own loggers are untouched)."""
        handlers: dict[str, Any] = {
            "engine_file": {
                "class": "logging.FileHandler",
                "filename": str(self.path),
                "encoding": "utf-8",
                "formatter": "engine",
            }
        }
        if self.verbose:
            handlers["engine_terminal"] = {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "engine",
            }
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"engine": {"format": LOG_FORMAT}},
            "handlers": handlers,
            "loggers": {"vllm": {"handlers": list(handlers), "level": "INFO", "propagate": False}},
        }

    def write_config(self) -> Path:
        """Write the logging config beside the log (vLLM's engine processes read it from a file)."""
        config_path = self.path.with_name(self.path.stem + "-logging.json")
        write_json_atomic(config_path, self.dict_config())
        return config_path

    @contextlib.contextmanager
    def capturing(self) -> Iterator[Path]:
        """While an engine starts, send everything it says to the log: vLLM's log lines (through the
        logging config file this yields, for vLLM's `logging_config`), its processes' output, and
        the Python warnings raised here by the libraries it loads."""
        config = self.write_config()
        self._capture_import_lines()
        with self._spawned_output(), warnings.catch_warnings(record=True) as caught:
            try:
                yield config
            finally:
                logger = logging.getLogger("vllm.engine_start")
                for item in caught:
                    where = f"{item.filename}:{item.lineno}"
                    logger.warning("%s: %s (%s)", item.category.__name__, item.message, where)

    def _capture_import_lines(self) -> None:
        """Send what vLLM logs while it is being imported (before it applies `dict_config` itself,
        which then replaces these handlers) to the same places. Only vLLM's own logger is touched,
        and only while vLLM has not configured it."""
        logger = logging.getLogger("vllm")
        if logger.handlers:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handlers: list[logging.Handler] = [logging.FileHandler(self.path, encoding="utf-8")]
        if self.verbose:
            handlers.append(logging.StreamHandler(sys.stderr))
        for handler in handlers:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    @contextlib.contextmanager
    def _spawned_output(self) -> Iterator[None]:
        """Processes started by `multiprocessing` (spawn) in this block write stdout and stderr to the log.

        vLLM's engine core and workers are spawned children that inherit our stdout and stderr, and
        they print beyond logging (import-time warnings, load progress bars, torch's C++ warnings).
        Rather than redirecting our own file descriptors, the children are started through a
        one-line launcher that appends their output to the log, for the duration of the block only
        (`multiprocessing.set_executable`, restored after). With `verbose`, output stays on the terminal.
        """
        if self.verbose:
            yield
            return
        import multiprocessing.spawn

        launcher = self.path.with_name(self.path.stem + "-python.sh")
        log, python = shlex.quote(str(self.path)), shlex.quote(sys.executable)
        launcher.write_text(f'#!/bin/sh\nexec {python} "$@" >>{log} 2>&1\n', encoding="utf-8")
        launcher.chmod(0o755)
        previous = multiprocessing.spawn.get_executable()
        multiprocessing.spawn.set_executable(str(launcher))
        try:
            yield
        finally:
            multiprocessing.spawn.set_executable(previous)

    def tail(self, lines: int = 30) -> str:
        """The log's last lines, for an error message."""
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def shutdown_engine(llm: Any) -> None:
    """Stop a `vllm.LLM`'s engine core processes now, rather than whenever it is garbage-collected."""
    engine = llm.llm_engine
    shutdown = getattr(engine, "shutdown", None) or getattr(
        getattr(engine, "engine_core", None), "shutdown", None
    )
    if callable(shutdown):
        shutdown()


def served_name(model: str) -> str:
    """The short name a server publishes and clients ask for: the bundled model has a fixed one."""
    if model in BUNDLED_ALIASES:
        return BUNDLED_NAME
    path = Path(model)
    return path.name if path.is_dir() else model


def local_identity(backend: str, model: str, dtype: DtypeChoice | None = None) -> TeacherIdentity:
    """Identity of a model we can see: the short name plus a fingerprint of its weights.

    The bundled model's fingerprint comes from its GGUF file, so an HTTP teacher that names it
    never converts it just to know who it is.
    """
    fingerprint = bundled_fingerprint() if model in BUNDLED_ALIASES else model_fingerprint(model)
    return TeacherIdentity(
        backend=backend,
        model=served_name(model),
        fingerprint=fingerprint,
        dtype=dtype.dtype if dtype else "",
        dtype_reason=dtype.reason if dtype else "",
    )


def teacher_identity(config: TeacherConfig, machine: Machine | None = None) -> TeacherIdentity:
    """Who will answer for `config`, known before any engine starts (a resumed run is checked against it).

    The in-process engine's dtype is ours to choose, so it is part of the identity; a server's is not
    visible to its clients, so an openai teacher's dtype stays unknown ("").
    """
    if config.backend != "vllm":
        return local_identity(config.backend, config.model)
    machine = machine or Machine.detect()
    choice = choose_dtype(config.engine.dtype, cuda=machine.cuda, cpu_flags=machine.cpu_flags)
    return local_identity(config.backend, config.model, choice)
