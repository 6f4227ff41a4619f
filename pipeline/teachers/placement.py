"""Where each of `selfinstruct serve --replicas N` servers runs: its own port, its own cores or GPUs.

Replicas that share cores or GPUs slow each other down, so each gets a disjoint share. On a GPU machine
replica i sees only its own devices (CUDA_VISIBLE_DEVICES): tensor x pipeline x data parallel GPUs
each, taken in order from the GPUs this process may use. On a CPU machine replica i gets its own block
of the cores this process may use: vLLM's CPU workers bind their OpenMP threads to it
(VLLM_CPU_OMP_THREADS_BIND, one `|`-separated list per worker when a replica has several), and the
whole server process group is confined to it (sched_setaffinity), so tokenization and the HTTP
front end stay off the other replicas' cores too.

Pure: the machine (cores, GPUs) is passed in, so every layout can be tested on any machine.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.core.errors import UserError

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Placement:
    """One replica: its port, the environment its server gets, and the cores it is confined to."""

    index: int
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cpus: tuple[int, ...] = ()
    """Cores the server's processes may run on (CPU machines); empty = no restriction."""
    gpus: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.gpus:
            return f"GPU {','.join(self.gpus)}"
        if self.cpus:
            return f"cores {_ranges(self.cpus)}"
        return "shared"


def _ranges(ids: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (the list syntax of taskset and VLLM_CPU_OMP_THREADS_BIND)."""
    out: list[str] = []
    start = prev = None
    for i in sorted(ids):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(out)


def _split(items: Sequence, parts: int) -> list[list]:
    """`items` in `parts` contiguous blocks as equal as possible (the first ones one longer)."""
    size, extra = divmod(len(items), parts)
    blocks, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        blocks.append(list(items[start:end]))
        start = end
    return blocks


def place_replicas(
    replicas: int,
    first_port: int,
    workers: int,
    *,
    cpus: Sequence[int],
    gpus: Sequence[str] | None,
) -> list[Placement]:
    """Ports and devices for `replicas` servers of `workers` engine workers each (tp x pp x dp).

    `gpus` are the device ids this process may use (None or empty: a CPU machine); `cpus` the cores.
    """
    if replicas < 1:
        raise UserError(f"--replicas must be at least 1, got {replicas}")
    if first_port + replicas - 1 > 65535:
        raise UserError(f"ports {first_port}..{first_port + replicas - 1} go past 65535")
    if gpus:
        need = replicas * workers
        if len(gpus) < need:
            raise UserError(
                f"{replicas} replica(s) of {workers} GPU(s) each need {need} GPUs; "
                f"{len(gpus)} are visible ({','.join(gpus)})"
            )
        return [
            Placement(
                index=i,
                port=first_port + i,
                env={"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * workers : (i + 1) * workers])},
                gpus=tuple(gpus[i * workers : (i + 1) * workers]),
            )
            for i in range(replicas)
        ]
    if replicas == 1:
        return [Placement(index=0, port=first_port)]  # one server: vLLM binds its own threads
    cores = sorted(cpus)
    if len(cores) < replicas * workers:
        raise UserError(
            f"{replicas} replica(s) of {workers} CPU worker(s) each need at least {replicas * workers} "
            f"cores, one per worker; this process may use {len(cores)} ({_ranges(cores)})"
        )
    placements = []
    for i, block in enumerate(_split(cores, replicas)):
        bind = "|".join(_ranges(part) for part in _split(block, workers))
        placements.append(
            Placement(
                index=i,
                port=first_port + i,
                env={"VLLM_CPU_OMP_THREADS_BIND": bind},
                cpus=tuple(block),
            )
        )
    return placements


def visible_gpus(environ: dict[str, str] | None = None, count: int | None = None) -> list[str]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES if set, else 0..count-1."""
    environ = dict(os.environ) if environ is None else environ
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip() and d.strip() != "-1"]
    if count is None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [str(i) for i in range(count)]


def usable_cpus() -> list[int]:
    """The cores this process may run on (its affinity mask: respects taskset, cgroups' cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public address
