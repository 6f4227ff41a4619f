"""The default teacher: vLLM in this process, the whole batch handed to the engine at once.

All requests of a batch are enqueued before the engine runs (completion prompts and chat
conversations alike), so vLLM schedules them together with prefix caching over the shared
few-shot prefixes; we then drive the engine's step loop ourselves, exactly as `LLM.generate` does,
only to hand each finished request to the cache the moment it exists instead of at the very end.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import UserError
from pipeline.core.model import resolve_model
from pipeline.teachers.base import Completion, Deliver, Request, SamplingParams, Teacher, TeacherError
from pipeline.teachers.config import TeacherConfig
from pipeline.teachers.reaper import guard_descendants
from pipeline.teachers.runtime import cpu_safe_options, local_identity, prepare_env
from pipeline.teachers.usage import Usage

if TYPE_CHECKING:
    import vllm

BACKEND = "vllm"


def build_llm(model: str, **engine_options: Any) -> vllm.LLM:
    """A `vllm.LLM` for `model` ("bundled", a folder or a hub name) with the CPU-safe set-up applied.

    Extra keyword arguments go to `vllm.LLM` unchanged (e.g. `enable_lora=True, max_lora_rank=16`).
    """
    path = resolve_model(model)
    prepare_env(path)
    if int(engine_options.get("data_parallel_size", 1)) > 1:
        raise UserError(
            "data_parallel_size > 1 is not supported by the in-process vllm backend; start several "
            "servers (`selfinstruct serve`, or one with --data-parallel-size) and use the openai backend "
            "with their base_urls"
        )
    engine_options.pop("data_parallel_size", None)
    options = cpu_safe_options({"enable_prefix_caching": True, **engine_options}, path)
    from vllm import LLM

    llm = LLM(model=path, **options)
    # The engine runs in child processes that outlive a SIGKILL of this one; a watchdog ends them.
    guard_descendants()
    return llm


def to_vllm_params(params: SamplingParams) -> Any:
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = StructuredOutputsParams(json=params.json_schema) if params.json_schema is not None else None
    return VLLMSamplingParams(
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        stop=list(params.stop) or None,
        presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty,
        seed=params.seed,
        structured_outputs=structured,
    )


class VLLMTeacher(Teacher):
    """In-process vLLM. The engine loads on first use, so a run answered wholly from cache never loads it."""

    def __init__(self, config: TeacherConfig, llm: vllm.LLM | None = None):
        usage = Usage(
            price_per_1k_prompt_tokens=config.price_per_1k_prompt_tokens,
            price_per_1k_completion_tokens=config.price_per_1k_completion_tokens,
        )
        super().__init__(local_identity(BACKEND, config.model), usage)
        self.config = config
        self._llm = llm

    @property
    def llm(self) -> vllm.LLM:
        if self._llm is None:
            self._llm = build_llm(self.config.model, **self.config.engine.llm_kwargs())
        return self._llm

    def stream(self, requests: list[Request], deliver: Deliver) -> None:
        llm = self.llm  # loads vLLM (and the model) on first use
        from vllm.exceptions import VLLMClientError

        engine = llm.llm_engine
        index_of: dict[str, int] = {}  # external request id -> request index
        internal_of: dict[str, str] = {}  # external -> vLLM's internal id (external plus a random suffix)
        text_idx = [i for i, r in enumerate(requests) if not r.is_chat]
        chat_idx = [i for i, r in enumerate(requests) if r.is_chat]
        started = time.perf_counter()
        try:
            try:
                if text_idx:
                    ids = llm.enqueue(
                        [requests[i].prompt for i in text_idx],
                        [to_vllm_params(requests[i].params) for i in text_idx],
                        use_tqdm=False,
                    )
                    self._remember(ids, text_idx, index_of, internal_of)
                if chat_idx:
                    ids = llm.enqueue_chat(
                        [requests[i].messages for i in chat_idx],
                        [to_vllm_params(requests[i].params) for i in chat_idx],
                        use_tqdm=False,
                    )
                    self._remember(ids, chat_idx, index_of, internal_of)
            except (VLLMClientError, ValueError) as exc:
                # e.g. a prompt longer than max_model_len, or n > 1 with greedy decoding.
                raise TeacherError(f"vLLM rejected a request: {exc}") from exc
            while engine.has_unfinished_requests():
                finished = [out for out in engine.step() if out.finished and out.request_id in index_of]
                if finished:
                    elapsed = time.perf_counter() - started
                    for out in finished:
                        internal_of.pop(out.request_id, None)
                    deliver(
                        [(index_of.pop(out.request_id), self._completion(out, elapsed)) for out in finished]
                    )
        finally:
            if internal_of:
                # Interrupted: drop what is still queued so the next batch starts clean.
                engine.abort_request(list(internal_of.values()), internal=True)

    @staticmethod
    def _remember(ids: list[str], indices: list[int], index_of: dict, internal_of: dict) -> None:
        """`enqueue` returns internal ids ("<external>-<suffix>"); outputs carry the external one."""
        for internal, index in zip(ids, indices, strict=True):
            external = internal.split("-", 1)[0]
            index_of[external] = index
            internal_of[external] = internal

    def _completion(self, output: Any, elapsed: float) -> Completion:
        choices = sorted(output.outputs, key=lambda c: c.index)
        return Completion(
            texts=[c.text for c in choices],
            finish_reasons=[c.finish_reason or "unknown" for c in choices],
            prompt_tokens=len(output.prompt_token_ids or ()),
            completion_tokens=sum(len(c.token_ids) for c in choices),
            latency_s=elapsed,
            backend=BACKEND,
            model=self.identity.model,
        )

    def close(self) -> None:
        if self._llm is not None:
            engine = self._llm.llm_engine
            shutdown = getattr(engine, "shutdown", None) or getattr(
                getattr(engine, "engine_core", None), "shutdown", None
            )
            if callable(shutdown):
                shutdown()
            self._llm = None
