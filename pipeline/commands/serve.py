"""`selfinstruct serve`: vLLM's OpenAI-compatible server for a model, for the openai teacher backend.

Its engine flags are generated from `EngineOptions`' fields (name, type, bounds, help), the way
vLLM's own `EngineArgs` makes its CLI: a setting added to the model is a flag here too.
"""

from __future__ import annotations

import json
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
        text = info.description or ""
        help_text = (text[:1].upper() + text[1:] + ".") if text else ""
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
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; 0.0.0.0 serves other machines too.",
)
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="The first replica's port."
)
@click.option(
    "--replicas",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Independent servers on consecutive ports, each on its own GPUs (tensor x pipeline x data "
    "parallel each) or, without GPUs, its own cores.",
)
@engine_flags
@click.option(
    "--api-key",
    envvar="VLLM_API_KEY",
    default=None,
    help="Clients must send this key (they send OPENAI_API_KEY); also read from VLLM_API_KEY.",
)
@click.option(
    "--start-timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds to wait for /health.",
)
@click.option("--log", "log_path", default=None, type=click.Path(dir_okay=False), help="Server log file.")
@click.option("--json", "as_json", is_flag=True, help="Print the base URLs as JSON on stdout once all serve.")
def serve(
    model: str,
    host: str,
    port: int,
    replicas: int,
    api_key: str | None,
    start_timeout: float,
    log_path: str | None,
    as_json: bool,
    **engine: Any,
) -> None:
    """Start vLLM's OpenAI-compatible server(s), print the base URLs, and stop them cleanly on Ctrl-C.

    Point a run at them with `teacher: {backend: openai, base_urls: [URL, ...]}`; servers on other
    machines can be listed too. One model too large for a node: --tensor-parallel-size and
    --pipeline-parallel-size across nodes with --distributed-executor-backend ray (docs/scaling.md).
    """
    from pathlib import Path

    from pipeline.core.errors import UserError
    from pipeline.core.model import cache_root
    from pipeline.teachers.engine import Machine, choose_dtype
    from pipeline.teachers.placement import place_replicas, usable_cpus, visible_gpus
    from pipeline.teachers.replicaset import ReplicaSet, open_network_warning, public_base_url, replica_log
    from pipeline.teachers.runtime import served_name
    from pipeline.teachers.server import ServerOptions

    warning = open_network_warning(host, api_key)
    if warning:  # first, before anything can fail: it is about how the command was written
        console.print(f"[bold yellow]warning:[/] {warning}")
    local = Path(model).expanduser()
    if (local.is_absolute() or model.startswith(".")) and not (local / "config.json").is_file():
        raise UserError(f"--model {model}: not a model folder (no config.json there)")
    options = ServerOptions(model=model, host=host, port=port, engine=engine_options(engine))
    machine = Machine.detect()
    dtype = choose_dtype(options.engine.dtype, cuda=machine.cuda, cpu_flags=machine.cpu_flags)
    workers = (
        options.engine.tensor_parallel_size
        * options.engine.pipeline_parallel_size
        * options.engine.data_parallel_size
    )
    placements = place_replicas(
        replicas, port, workers, cpus=usable_cpus(), gpus=visible_gpus() if machine.cuda else []
    )
    logs = Path(log_path) if log_path else None
    if logs is not None:
        from pipeline.core.outputs import check_output_file

        check_output_file(logs, "--log")
    fleet = ReplicaSet(
        options, placements, lambda p: replica_log(logs, cache_root() / "logs", p, replicas), api_key
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        where = f"{host}:{port}" if replicas == 1 else f"{host}:{port}-{port + replicas - 1}"
        with console.status(
            f"starting {replicas} vLLM server(s) for {model} on {where}, dtype {dtype.dtype}"
        ):
            fleet.start(timeout_s=start_timeout)
        urls = [public_base_url(host, r.placement.port) for r in fleet.replicas]
        for replica, url in zip(fleet.replicas, urls, strict=True):
            console.print(
                f"serving [bold]{served_name(model)}[/] at {url} ({replica.placement.describe()}, "
                f"{dtype.dtype}: {dtype.reason}; log: {replica.server.log_path})"
            )
        if replicas > 1:
            console.print("for a run config:\n  teacher:\n    backend: openai\n    base_urls:")
            console.print("\n".join(f"      - {url}" for url in urls))
        console.print("Ctrl-C stops " + ("it" if replicas == 1 else "them all"))
        if as_json:
            click.echo(json.dumps({"model": served_name(model), "base_urls": urls}))
        else:
            click.echo("\n".join(urls))
        while not stop.is_set():
            for replica, code in fleet.exited():
                message = f"replica on port {replica.placement.port} exited with code {code}"
                if not fleet.replicas:
                    raise UserError(
                        f"the vLLM server exited: {message}; last log lines:\n{replica.server.tail()}"
                    )
                console.print(f"[yellow]warning:[/] {message}; {len(fleet.replicas)} still serving")
            stop.wait(1.0)
    except KeyboardInterrupt:
        console.print("stopping the server" + ("s" if replicas > 1 else ""))
    finally:
        fleet.stop()
        signal.signal(signal.SIGTERM, previous)
