"""The default teacher: vLLM in this process, the whole batch handed to the engine at once.

All requests of a batch are enqueued before the engine runs (completion prompts and chat
conversations alike), so vLLM schedules them together with prefix caching over the shared
few-shot prefixes; we then drive the engine's step loop ourselves, exactly as `LLM.generate` does,
only to hand each finished request to the cache the moment it exists instead of at the very end.
Requests added to the queue meanwhile (follow-ups built from a finished reply) join the running
batch between two steps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import UserError
from pipeline.core.model import resolve_model
from pipeline.teachers.base import (
    Completion,
    Deliver,
    Request,
    RequestQueue,
    SamplingParams,
    Teacher,
    TeacherError,
)
from pipeline.teachers.config import EngineOptions, TeacherConfig
from pipeline.teachers.engine import Machine, engine_kwargs
from pipeline.teachers.reaper import guard_descendants
from pipeline.teachers.runtime import EngineLog, engine_env, scoped_environ, shutdown_engine, teacher_identity
from pipeline.teachers.usage import Usage

if TYPE_CHECKING:
    import vllm

BACKEND = "vllm"


def build_llm(
    model: str,
    options: EngineOptions | None = None,
    *,
    log: EngineLog | None = None,
    machine: Machine | None = None,
    **extra: Any,
) -> vllm.LLM:
    """A `vllm.LLM` for `model` ("bundled", a folder or a hub name) with the machine's rules applied.

    `extra` are further vLLM engine arguments (e.g. `enable_lora=True, max_lora_rank=16`). vLLM's
    log lines go to `log` (by default a file in the cache); if the engine fails to start, the error
    carries the log's last lines.
    """
    path = resolve_model(model)
    options = options or EngineOptions()
    if options.data_parallel_size > 1:
        raise UserError(
            "data_parallel_size > 1 is not supported by the in-process vllm backend; start several "
            "servers (`selfinstruct serve`, or one with --data-parallel-size) and use the openai backend "
            "with their base_urls"
        )
    machine = machine or Machine.detect()
    log = log or EngineLog.default()
    kwargs = engine_kwargs(options, path, machine, **extra)
    with scoped_environ(engine_env(path, machine)), log.capturing() as log_config:
        from vllm import LLM
        from vllm.config.logging import LoggingConfig

        try:
            llm = LLM(
                model=path,
                logging_config=LoggingConfig(log_level="INFO", pylogging_config_file=str(log_config)),
                **kwargs,
            )
        except Exception as exc:
            raise UserError(
                f"the vLLM engine for {model} did not start ({type(exc).__name__}: {exc}); "
                f"last lines of {log.path}:\n{log.tail()}"
            ) from exc
    # The engine runs in child processes that outlive a SIGKILL of this one; a watchdog ends them.
    guard_descendants()
    return llm


def to_vllm_params(params: SamplingParams) -> Any:
    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = None
    if params.json_schema is not None:
        structured = StructuredOutputsParams(json=params.json_schema)
    elif params.structured is not None:
        structured = StructuredOutputsParams(**params.structured.as_vllm())
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

    structured_outputs = True
    cancels = True

    def __init__(
        self,
        config: TeacherConfig,
        llm: vllm.LLM | None = None,
        *,
        log: EngineLog | None = None,
        machine: Machine | None = None,
    ):
        usage = Usage(
            price_per_1k_prompt_tokens=config.price_per_1k_prompt_tokens,
            price_per_1k_completion_tokens=config.price_per_1k_completion_tokens,
        )
        self.machine = machine or Machine.detect()
        super().__init__(teacher_identity(config, self.machine), usage)
        self.config = config
        self.log = log
        self._llm = llm
        self.engine_busy_s = 0.0
        """Wall seconds the engine had requests to work on (`bench/generate.py` derives its idle share)."""

    @property
    def capacity(self) -> int | None:  # type: ignore[override]
        """The engine's sequences per step (its scheduler's max_num_seqs), once it is loaded."""
        if self._llm is None:
            return self.config.engine.max_num_seqs
        return int(self._llm.llm_engine.vllm_config.scheduler_config.max_num_seqs)

    @property
    def llm(self) -> vllm.LLM:
        if self._llm is None:
            self._llm = build_llm(self.config.model, self.config.engine, log=self.log, machine=self.machine)
        return self._llm

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        llm = self.llm  # loads vLLM (and the model) on first use
        engine = llm.llm_engine
        index_of: dict[str, int] = {}  # external request id -> request index
        internal_of: dict[str, str] = {}  # external -> vLLM's internal id (external plus a random suffix)
        busy_since: float | None = None
        try:
            while True:
                # Requests `deliver` added join the running batch before the next step; cancelled
                # ones leave it.
                self._drop(engine, queue.take_cancelled(), index_of, internal_of)
                self._enqueue(llm, queue.take(), index_of, internal_of)
                if not engine.has_unfinished_requests():
                    break
                if busy_since is None:
                    busy_since = time.perf_counter()
                finished = [out for out in engine.step() if out.finished and out.request_id in index_of]
                if finished:
                    for out in finished:
                        internal_of.pop(out.request_id, None)
                    deliver([(index_of.pop(out.request_id), self._completion(out)) for out in finished])
                if not engine.has_unfinished_requests():
                    self.engine_busy_s += time.perf_counter() - busy_since
                    busy_since = None
        finally:
            if busy_since is not None:
                self.engine_busy_s += time.perf_counter() - busy_since
            if internal_of:
                # Interrupted: drop what is still queued so the next batch starts clean.
                engine.abort_request(list(internal_of.values()), internal=True)

    @staticmethod
    def _drop(engine: Any, cancelled: list[int], index_of: dict, internal_of: dict) -> None:
        """Abort cancelled requests that are in the engine (one not taken yet never gets there)."""
        if not cancelled:
            return
        gone = set(cancelled)
        external = [e for e, i in index_of.items() if i in gone]
        internal = [internal_of.pop(e) for e in external if e in internal_of]
        for e in external:
            del index_of[e]
        if internal:
            engine.abort_request(internal, internal=True)

    def _enqueue(
        self, llm: vllm.LLM, new: list[tuple[int, Request]], index_of: dict, internal_of: dict
    ) -> None:
        """Hand requests to the engine (completion prompts and chat conversations alike) without running it."""
        from vllm.exceptions import VLLMClientError

        text = [(i, r) for i, r in new if not r.is_chat]
        chat = [(i, r) for i, r in new if r.is_chat]
        try:
            if text:
                ids = llm.enqueue(
                    [r.prompt for _, r in text], [to_vllm_params(r.params) for _, r in text], use_tqdm=False
                )
                self._remember(ids, [i for i, _ in text], index_of, internal_of)
            if chat:
                ids = llm.enqueue_chat(
                    [r.messages for _, r in chat], [to_vllm_params(r.params) for _, r in chat], use_tqdm=False
                )
                self._remember(ids, [i for i, _ in chat], index_of, internal_of)
        except (VLLMClientError, ValueError) as exc:
            # e.g. a prompt longer than max_model_len, or n > 1 with greedy decoding.
            raise TeacherError(f"vLLM rejected a request: {exc}") from exc

    @staticmethod
    def _remember(ids: list[str], indices: list[int], index_of: dict, internal_of: dict) -> None:
        """`enqueue` returns internal ids ("<external>-<suffix>"); outputs carry the external one."""
        for internal, index in zip(ids, indices, strict=True):
            external = internal.split("-", 1)[0]
            index_of[external] = index
            internal_of[external] = internal

    def _completion(self, output: Any) -> Completion:
        choices = sorted(output.outputs, key=lambda c: c.index)
        return Completion(
            texts=[c.text for c in choices],
            finish_reasons=[c.finish_reason or "unknown" for c in choices],
            prompt_tokens=len(output.prompt_token_ids or ()),
            completion_tokens=sum(len(c.token_ids) for c in choices),
            backend=BACKEND,
            model=self.identity.model,
        )

    def close(self) -> None:
        if self._llm is not None:
            shutdown_engine(self._llm)
            self._llm = None
