"""Several vLLM servers started, watched and stopped together: what `selfinstruct serve --replicas N` runs.

All servers are launched at once and then waited for (their start-ups overlap); if one cannot start,
all are stopped. While serving, a replica that exits is reported and dropped, and the others go on
(the openai teacher benches it and finishes the run on the rest); the set ends when none is left.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.teachers.placement import Placement, is_loopback
from pipeline.teachers.server import ServerOptions, VLLMServer

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass
class Replica:
    placement: Placement
    server: VLLMServer

    @property
    def url(self) -> str:
        return self.server.base_url


def public_base_url(host: str, port: int) -> str:
    """The base URL clients use: a wildcard bind address is not one, this machine's name is."""
    name = socket.getfqdn() if host in WILDCARD_HOSTS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # an IPv6 literal
    return f"http://{name}:{port}/v1"


def open_network_warning(host: str, api_key: str | None) -> str | None:
    """Why serving on `host` without a key is a risk, or None when it is not."""
    if api_key or is_loopback(host):
        return None
    return (
        f"serving on {host} without --api-key: anyone who can reach this machine on the network can use "
        "the server (and its GPUs or CPUs) freely. Set --api-key (or VLLM_API_KEY) and give clients the "
        "same key in OPENAI_API_KEY, or bind to 127.0.0.1."
    )


def replica_log(log_path: Path | None, default_dir: Path, port: int, replicas: int) -> Path:
    """Each replica's log: `serve-PORT.log` in the cache, or the given file (one per port if several)."""
    if log_path is None:
        return default_dir / f"serve-{port}.log"
    if replicas == 1:
        return log_path
    return log_path.with_name(f"{log_path.stem}-{port}{log_path.suffix}")


class ReplicaSet:
    """The servers of one `serve` command."""

    def __init__(
        self,
        options: ServerOptions,
        placements: Sequence[Placement],
        log_for: Callable[[int], Path],
        api_key: str | None = None,
    ):
        key_env = {"VLLM_API_KEY": api_key} if api_key else {}  # not on the command line: `ps` shows it
        self.replicas = [
            Replica(
                placement,
                VLLMServer(
                    ServerOptions(
                        model=options.model,
                        host=options.host,
                        port=placement.port,
                        engine=options.engine,
                        extra_args=options.extra_args,
                    ),
                    log_for(placement.port),
                    env={**placement.env, **key_env},
                    cpus=placement.cpus,
                ),
            )
            for placement in placements
        ]

    def start(self, timeout_s: float) -> None:
        """Launch every server, then wait for each to answer /health; on any failure stop them all."""
        try:
            for replica in self.replicas:
                replica.server.launch()
            for replica in self.replicas:
                try:
                    replica.server.wait_healthy(timeout_s)
                except UserError as exc:
                    where = f"replica {replica.placement.index} (port {replica.placement.port})"
                    raise UserError(f"{where}: {exc}") from exc
        except BaseException:
            self.stop()
            raise

    def exited(self) -> list[tuple[Replica, int]]:
        """Replicas whose server has exited since the last call, with their exit codes; they leave the set."""
        gone = []
        for replica in list(self.replicas):
            process = replica.server.process
            code = process.poll() if process is not None else -1
            if code is not None:
                gone.append((replica, code))
                replica.server.stop()
                self.replicas.remove(replica)
        return gone

    def stop(self) -> None:
        """Stop every server at once (each is given its grace period in parallel, not one after another)."""
        if not self.replicas:
            return
        with ThreadPoolExecutor(max_workers=len(self.replicas)) as pool:
            list(pool.map(lambda replica: replica.server.stop(), self.replicas))
