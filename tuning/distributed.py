"""One training process among several: which one is the main process, and work done once for all.

`selfinstruct train` runs unchanged under `accelerate launch` and `torchrun`. The launcher starts one
process per device and describes the group in the environment (WORLD_SIZE, RANK, MASTER_ADDR ...);
`joined` brings this process into the group through accelerate's PartialState (NCCL on GPUs, gloo on
CPUs), and the Trainer then trains data-parallel. Reading and checking the data happen on the main
process only (`run_on_main` hands the result to the others), and so does every file write except the
Trainer's own per-process RNG state in its checkpoints.

A single process (`make train`, plain `selfinstruct train`) joins nothing and behaves as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipeline.core.errors import UserError
from pipeline.core.jsonio import write_json_atomic

T = TypeVar("T")

# Set by the launchers: torchrun / accelerate's torch.distributed launcher, and MPI (accelerate --cpu).
_WORLD_SIZE_KEYS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_KEYS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
# In the training output folder: how many processes wrote its checkpoints.
LAUNCH_FILE = "launch.json"


@dataclass(frozen=True)
class Launch:
    """How this process was started: how many training processes there are and which one this is."""

    world_size: int = 1
    rank: int = 0
    # Several processes and no GPU: the Trainer must be told (TrainingArguments.use_cpu), or it sees no
    # device to spread over and trains each process alone on the whole data.
    cpu: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _first_int(environ: Mapping[str, str], keys: tuple[str, ...], default: int) -> int:
    for key in keys:
        value = environ.get(key, "").strip()
        if value:
            try:
                return int(value)
            except ValueError as exc:
                raise UserError(f"environment variable {key}={value!r} is not a whole number") from exc
    return default


def _has_accelerator() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch:
    """The launch the environment describes; reads only, joins nothing."""
    environ = os.environ if environ is None else environ
    world_size = _first_int(environ, _WORLD_SIZE_KEYS, 1)
    rank = _first_int(environ, _RANK_KEYS, 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(
            f"the launcher set rank {rank} of {world_size} processes, which is not a valid launch"
        )
    if world_size == 1:
        return Launch()
    forced_cpu = environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")
    return Launch(world_size=world_size, rank=rank, cpu=forced_cpu or not _has_accelerator())


def lone_process_warning(environ: Mapping[str, str] | None = None) -> str | None:
    """Why a launch that asked for several processes got one, if that is what happened.

    `accelerate launch --cpu --num_processes N` starts N processes only through MPI (`--mpirun_hostfile`);
    without it accelerate starts ONE process and still sets MASTER_ADDR. Training would then run alone
    on the whole data, N times slower than the user expects, so we say so.
    """
    environ = os.environ if environ is None else environ
    cpu = environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")
    if cpu and "MASTER_ADDR" in environ and _first_int(environ, _WORLD_SIZE_KEYS, 1) == 1:
        return (
            "accelerate launch --cpu started a single training process (several CPU processes need MPI: "
            "--mpirun_hostfile). For data-parallel training on CPUs use "
            "`torchrun --nproc_per_node N -m pipeline.cli train ...` or "
            "`accelerate launch --multi_gpu --num_processes N -m pipeline.cli train ...` (gloo; see docs/scaling.md)"
        )
    return None


@contextmanager
def joined(launch: Launch) -> Iterator[Launch]:
    """Join the launcher's process group for the duration of the block (nothing to do for one process)."""
    if not launch.distributed:
        yield launch
        return
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=launch.cpu)
    if state.num_processes != launch.world_size or state.process_index != launch.rank:
        raise UserError(
            f"accelerate sees process {state.process_index} of {state.num_processes}, the launcher said "
            f"{launch.rank} of {launch.world_size}: check the launch command"
        )
    try:
        yield launch
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_on_main(launch: Launch, work: Callable[[], T]) -> T:
    """Run `work` once, on the main process, and hand its result to every process.

    The other processes wait in the broadcast. When `work` fails on the main process, the main
    process reports it and exits with its status; the others leave quietly with status 0, so the
    launcher (which stops every process as soon as one fails) lets the main process finish reporting
    and names it as the failure. (torch.distributed directly, not accelerate's helpers: the Trainer
    re-creates accelerate's state.)
    """
    if not launch.distributed:
        return work()
    import torch.distributed as dist

    box: list[object] = [None]
    if launch.is_main:
        try:
            box = [("ok", work())]
        except BaseException:
            dist.broadcast_object_list([("failed", None)], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]  # type: ignore[misc]
    if kind != "ok":
        raise SystemExit(0)
    return value  # type: ignore[return-value]


def barrier(launch: Launch) -> None:
    """Wait until every process gets here (a no-op for one process)."""
    if launch.distributed:
        import torch.distributed as dist

        dist.barrier()


def record_launch(out: Path, launch: Launch, batch_size: int, accumulation: int) -> None:
    """Write how this run is spread (main process only), so a resume can check it."""
    write_json_atomic(
        out / LAUNCH_FILE,
        {
            "world_size": launch.world_size,
            "per_device_batch_size": batch_size,
            "gradient_accumulation_steps": accumulation,
            "effective_batch_size": batch_size * accumulation * launch.world_size,
        },
    )


def check_resume_launch(out: Path, launch: Launch, batch_size: int = 0, accumulation: int = 0) -> None:
    """Refuse to resume checkpoints written by a different number of processes or effective batch.

    The effective batch (per-device batch x accumulation x processes) and each process's share of the
    data depend on it, and the Trainer would skip the wrong batches to reach the step it resumes at.
    Folders written before this file existed were trained by one process. `batch_size` 0: not checked.
    """
    path = out / LAUNCH_FILE
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    processes = saved.get("world_size", 1)
    if processes != launch.world_size:
        raise UserError(
            f"{out} holds checkpoints written by {processes} training process(es), and this launch has "
            f"{launch.world_size}; resume with the same number of processes (the effective batch and "
            "the data order depend on it), or start over with --force or a fresh --out"
        )
    effective = batch_size * accumulation * launch.world_size
    before = saved.get("effective_batch_size")
    if batch_size and before is not None and before != effective:
        raise UserError(
            f"{out} holds checkpoints trained with an effective batch of {before} and this launch has "
            f"{effective} ({batch_size} per device x {accumulation} accumulation x {launch.world_size} "
            "process(es)); resume with the same, or start over with --force or a fresh --out"
        )
