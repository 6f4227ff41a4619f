"""Shared, session-scoped engines: loading a model is slow and the machine is shared, so every test
in a session uses ONE in-process vLLM teacher (`vllm_teacher`) and ONE vLLM OpenAI server
(`vllm_server`), created on first use and stopped at the end of the session.

Both run the bundled SmolLM2 model with a small memory footprint (eager mode on CPU, 30% memory
cap, a 1 GiB KV cache, 4096-token context).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The same environment the Makefile exports; set before anything imports vLLM.
for _key, _value in {
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "SELFINSTRUCT_CACHE": str(REPO / ".cache"),
    "VLLM_CACHE_ROOT": str(REPO / ".cache" / "vllm"),
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

TEST_ENGINE = {"max_model_len": 4096, "gpu_memory_utilization": 0.3, "kv_cache_memory_gib": 1.0}


@pytest.fixture(scope="session")
def vllm_teacher(tmp_path_factory):
    """Our `VLLMTeacher` on the bundled model, cache off (wrap it in `CachedTeacher(t, dir)` for caching).

    Its `usage` accumulates over the whole session: take `usage.copy()` before and `usage.since(...)` after.
    vLLM's log lines go to `teacher.log.path` (a session temporary folder).
    """
    from pipeline.teachers import EngineOptions, TeacherConfig
    from pipeline.teachers.runtime import EngineLog
    from pipeline.teachers.vllm_local import VLLMTeacher

    teacher = VLLMTeacher(
        TeacherConfig(backend="vllm", model="bundled", cache=False, engine=EngineOptions(**TEST_ENGINE)),
        log=EngineLog(tmp_path_factory.mktemp("engine") / "engine.log"),
    )
    try:
        yield teacher
    finally:
        teacher.close()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """vLLM's real OpenAI-compatible server on 127.0.0.1 (a free port) with the bundled model.

    Yields the base URL (`http://127.0.0.1:PORT/v1`); the served model name is `smollm2-135m-instruct`,
    which `TeacherConfig(backend="openai", model="bundled", base_urls=[url])` asks for. Stopped by PID
    (its whole process group) at the end of the session.
    """
    from pipeline.teachers import EngineOptions
    from pipeline.teachers.server import ServerOptions, VLLMServer, free_port

    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    server = VLLMServer(
        ServerOptions(model="bundled", port=free_port(), engine=EngineOptions(**TEST_ENGINE)), log
    )
    server.start(timeout_s=600)
    try:
        yield server.base_url
    finally:
        server.stop()
