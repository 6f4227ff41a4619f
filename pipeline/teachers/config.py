"""Teacher settings as they appear under `teacher:` in a run config, and the one vLLM engine options model.

`EngineOptions` is the only definition of the engine's settings: `teacher.engine` of a run,
`evaluate.engine` of a training config and the flags of `selfinstruct serve` are all this model.
`pipeline.teachers.engine` turns it into `vllm.LLM` keyword arguments or the api_server command
line (the same vLLM `EngineArgs` either way) after applying the machine's rules (the dtype its CPU
runs fast, the CPU backend's safety settings). This module is pure data: no vLLM, no torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
DTYPE_ALIASES = {"half": "float16", "float": "float32"}
"""vLLM's other spellings of the same dtypes, folded so that one dtype has one name in identities."""


class EngineOptions(BaseModel):
    """vLLM engine settings, named as vLLM's `EngineArgs` names them (flags: `--max-model-len`, ...).

    A field's `cli` extra renames its `selfinstruct serve` flag where an older flag name must keep working.
    """

    model_config = ConfigDict(extra="forbid")

    dtype: Dtype = Field(
        "auto",
        description="auto: bfloat16 on a CPU with native bf16 (avx512_bf16/AMX), else float32; vLLM's choice on GPU",
    )
    max_model_len: int | None = Field(None, ge=16, description="context length (default: the model's)")
    gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="share of device memory for the engine (capped at 0.5 on CPU)"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans (each layer split)")
    pipeline_parallel_size: int = Field(
        1, ge=1, description="stages one engine spans (its layers split); with ray, across nodes"
    )
    data_parallel_size: int = Field(
        1, ge=1, description="engine replicas in one server; the in-process teacher needs 1"
    )
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None,
        description="how an engine's workers run: mp (processes on this node) or ray (a Ray cluster, "
        "for a model larger than one node); default: vLLM's choice",
    )
    enforce_eager: bool = Field(False, description="no CUDA graphs / compilation (always on on CPU)")
    enable_prefix_caching: bool = Field(True, description="reuse the KV cache of shared prompt prefixes")
    seed: int = Field(0, description="the engine's random seed")
    kv_cache_memory_gib: float | None = Field(
        None,
        gt=0.0,
        description="KV cache size in GiB (CPU default: 2, or VLLM_CPU_KVCACHE_SPACE)",
        json_schema_extra={"cli": "kv-cache-gib"},
    )
    max_num_seqs: int | None = Field(None, ge=1, description="most sequences in one engine step")

    @field_validator("dtype", mode="before")
    @classmethod
    def _fold_alias(cls, value: object) -> object:
        return DTYPE_ALIASES.get(value, value) if isinstance(value, str) else value


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
    max_failed_attempts_in_a_row: int | None = Field(
        None,
        ge=1,
        description="openai backend: stop the batch once this many attempts in a row, of any requests, "
        "failed on the server's side (no answer, 5xx); None: only each request's max_retries "
        "(the judge sets it: a dead judge must not cost every request's retries)",
    )
    timeout_s: float = Field(600.0, gt=0.0)
    retry_base_s: float = Field(0.5, ge=0.0, description="first backoff delay; doubles per retry")
    retry_max_s: float = Field(30.0, ge=0.0, description="longest backoff delay (Retry-After may ask more)")
    engine: EngineOptions = Field(default_factory=EngineOptions)
    cache: bool = True
    price_per_1k_prompt_tokens: float | None = Field(None, ge=0.0)
    price_per_1k_completion_tokens: float | None = Field(None, ge=0.0)
