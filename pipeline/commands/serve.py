"""`selfinstruct serve`: vLLM's OpenAI-compatible server for a model, for the openai teacher backend.

Its engine flags are generated from `EngineOptions`' fields (name, type, bounds, help), the way
vLLM's own `EngineArgs` makes its CLI: a setting added to the model is a flag here too.
"""

from __future__ import annotations

import signal
import threading
import typing
from collections.abc import Callable
from typing import Any, Literal

import annotated_types
import click
from pydantic.fields import FieldInfo

from pipeline.core.console import console
from pipeline.teachers.config import EngineOptions

F = typing.TypeVar("F", bound=Callable[..., Any])


def _click_type(info: FieldInfo) -> Any:
    """The click parameter type of a field: its base type with the field's bounds, or its choices."""
    base = info.annotation
    if typing.get_origin(base) is not Literal:
        base = next((a for a in typing.get_args(base) if a is not type(None)), base)
    if typing.get_origin(base) is Literal:
        return click.Choice([str(a) for a in typing.get_args(base)])
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["min"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            bounds.update(min=item.gt, min_open=True)
        elif isinstance(item, annotated_types.Le):
            bounds["max"] = item.le
        elif isinstance(item, annotated_types.Lt):
            bounds.update(max=item.lt, max_open=True)
    if base is int:
        if bounds.pop("min_open", False):
            bounds["min"] += 1
        bounds.pop("max_open", None)
        return click.IntRange(**bounds) if bounds else int
    if base is float:
        return click.FloatRange(**bounds) if bounds else float
    return base


def engine_flags(func: F) -> F:
    """One click option per `EngineOptions` field; each defaults to None, meaning the model's default."""
    for name, info in reversed(EngineOptions.model_fields.items()):
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        flag = str(extra.get("cli", name.replace("_", "-")))
        help_text = info.description or ""
        if info.default is not None:
            help_text += (
                f" [default: {str(info.default).lower() if info.default in (True, False) else info.default}]"
            )
        if info.annotation is bool:
            option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=help_text)
        else:
            option = click.option(f"--{flag}", name, type=_click_type(info), default=None, help=help_text)
        func = option(func)
    return func


def engine_options(params: dict[str, Any]) -> EngineOptions:
    """The `EngineOptions` that parsed flags describe (flags not given keep the model's defaults)."""
    given = {name: params[name] for name in EngineOptions.model_fields if params.get(name) is not None}
    return EngineOptions(**given)


@click.command()
@click.option(
    "--model", default="bundled", show_default=True, help="HF folder or hub name; 'bundled' = SmolLM2."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@engine_flags
@click.option(
    "--start-timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds to wait for /health.",
)
@click.option("--log", "log_path", default=None, type=click.Path(dir_okay=False), help="Server log file.")
def serve(
    model: str, host: str, port: int, start_timeout: float, log_path: str | None, **engine: Any
) -> None:
    """Start vLLM's OpenAI-compatible server, print its base URL, and stop it cleanly on Ctrl-C.

    Point a run at it with `teacher: {backend: openai, base_urls: [URL]}`; several servers (on
    several ports or machines) can serve one run.
    """
    from pathlib import Path

    from pipeline.core.errors import UserError
    from pipeline.core.model import cache_root
    from pipeline.teachers.engine import Machine, choose_dtype
    from pipeline.teachers.runtime import served_name
    from pipeline.teachers.server import ServerOptions, VLLMServer

    local = Path(model).expanduser()
    if (local.is_absolute() or model.startswith(".")) and not (local / "config.json").is_file():
        raise UserError(f"--model {model}: not a model folder (no config.json there)")
    options = ServerOptions(model=model, host=host, port=port, engine=engine_options(engine))
    machine = Machine.detect()
    dtype = choose_dtype(options.engine.dtype, cuda=machine.cuda, cpu_flags=machine.cpu_flags)
    log = Path(log_path) if log_path else cache_root() / "logs" / f"serve-{port}.log"
    server = VLLMServer(options, log)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with console.status(f"starting vLLM for {model} on {host}:{port}, dtype {dtype.dtype} (log: {log})"):
            base_url = server.start(timeout_s=start_timeout)
        console.print(
            f"serving [bold]{served_name(model)}[/] at {base_url} in {dtype.dtype} ({dtype.reason}; "
            f"log: {log}); Ctrl-C stops it"
        )
        click.echo(base_url)
        while not stop.is_set():
            assert server.process is not None
            code = server.process.poll()
            if code is not None:
                raise UserError(f"the vLLM server exited with code {code}; last log lines:\n{server.tail()}")
            stop.wait(1.0)
    except KeyboardInterrupt:
        console.print("stopping the server")
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
