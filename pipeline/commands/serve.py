"""`selfinstruct serve`: vLLM's OpenAI-compatible server for a model, for the openai teacher backend."""

from __future__ import annotations

import signal
import threading

import click

from pipeline.core.console import console


@click.command()
@click.option(
    "--model", default="bundled", show_default=True, help="HF folder or hub name; 'bundled' = SmolLM2."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tensor-parallel-size", default=1, show_default=True, type=click.IntRange(1))
@click.option("--data-parallel-size", default=1, show_default=True, type=click.IntRange(1))
@click.option(
    "--max-model-len", default=None, type=click.IntRange(16), help="Context length (default: the model's)."
)
@click.option(
    "--gpu-memory-utilization", default=None, type=click.FloatRange(0.01, 1.0), help="Capped at 0.5 on CPU."
)
@click.option(
    "--kv-cache-gib", default=None, type=click.FloatRange(0.01), help="KV cache size (CPU default: 2 GiB)."
)
@click.option(
    "--start-timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds to wait for /health.",
)
@click.option("--log", "log_path", default=None, type=click.Path(dir_okay=False), help="Server log file.")
def serve(
    model: str,
    host: str,
    port: int,
    tensor_parallel_size: int,
    data_parallel_size: int,
    max_model_len: int | None,
    gpu_memory_utilization: float | None,
    kv_cache_gib: float | None,
    start_timeout: float,
    log_path: str | None,
) -> None:
    """Start vLLM's OpenAI-compatible server, print its base URL, and stop it cleanly on Ctrl-C.

    Point a run at it with `teacher: {backend: openai, base_urls: [URL]}`; several servers (on
    several ports or machines) can serve one run.
    """
    from pathlib import Path

    from pipeline.core.errors import UserError
    from pipeline.core.model import cache_root
    from pipeline.teachers.runtime import served_name
    from pipeline.teachers.server import ServerOptions, VLLMServer

    local = Path(model).expanduser()
    if (local.is_absolute() or model.startswith(".")) and not (local / "config.json").is_file():
        raise UserError(f"--model {model}: not a model folder (no config.json there)")
    options = ServerOptions(
        model=model,
        host=host,
        port=port,
        tensor_parallel_size=tensor_parallel_size,
        data_parallel_size=data_parallel_size,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        kv_cache_memory_gib=kv_cache_gib,
    )
    log = Path(log_path) if log_path else cache_root() / "logs" / f"serve-{port}.log"
    server = VLLMServer(options, log)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with console.status(f"starting vLLM for {model} on {host}:{port} (log: {log})"):
            base_url = server.start(timeout_s=start_timeout)
        console.print(f"serving [bold]{served_name(model)}[/] at {base_url} (log: {log}); Ctrl-C stops it")
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
