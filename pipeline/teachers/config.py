"""Teacher settings as they appear under `teacher:` in a run config.

Engine options are vLLM's own (they go to `vllm.LLM` or to `selfinstruct serve`); on a machine
without CUDA `build_llm` overrides the ones that break or starve the CPU backend.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class EngineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: str = "auto"
    max_model_len: int | None = Field(None, ge=16)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(
        1, ge=1, description="in-process vLLM needs 1; use several servers instead"
    )
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    seed: int = 0
    kv_cache_memory_gib: float | None = Field(
        None, gt=0.0, description="KV cache size; on CPU defaults to 2 GiB (or VLLM_CPU_KVCACHE_SPACE)"
    )
    max_num_seqs: int | None = Field(None, ge=1)

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `vllm.LLM`, leaving out what vLLM should decide itself."""
        out: dict[str, Any] = {
            "dtype": self.dtype,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "enforce_eager": self.enforce_eager,
            "enable_prefix_caching": self.enable_prefix_caching,
            "seed": self.seed,
        }
        if self.data_parallel_size != 1:
            out["data_parallel_size"] = self.data_parallel_size
        if self.max_model_len is not None:
            out["max_model_len"] = self.max_model_len
        if self.kv_cache_memory_gib is not None:
            out["kv_cache_memory_bytes"] = int(self.kv_cache_memory_gib * (1 << 30))
        if self.max_num_seqs is not None:
            out["max_num_seqs"] = self.max_num_seqs
        return out


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["vllm", "openai"] = "vllm"
    model: str = Field("bundled", description="a HF folder or hub name; 'bundled' = the embedded SmolLM2")
    base_urls: list[str] = Field(default_factory=list, description="openai backend: one or more .../v1 URLs")
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(
        64, ge=1, description="openai backend: the most requests open at once on one replica (base URL)"
    )
    adaptive_concurrency: bool = Field(
        True,
        description="openai backend: each replica starts at a few requests at once and finds its own "
        "limit up to `concurrency` (more while answers come back, fewer on 429/503/timeouts); "
        "false starts every replica at `concurrency` (overloads still lower it)",
    )
    max_retries: int = Field(6, ge=0)
    timeout_s: float = Field(600.0, gt=0.0)
    retry_base_s: float = Field(0.5, ge=0.0, description="first backoff delay; doubles per retry")
    retry_max_s: float = Field(30.0, ge=0.0, description="longest backoff delay (Retry-After may ask more)")
    engine: EngineOptions = Field(default_factory=EngineOptions)
    cache: bool = True
    price_per_1k_prompt_tokens: float | None = Field(None, ge=0.0)
    price_per_1k_completion_tokens: float | None = Field(None, ge=0.0)
