"""Teachers: the model that writes instructions and answers, behind one batch-first interface.

`make_teacher(config, cache_dir)` is the one way stages get a teacher; the heavy backends (vLLM,
openai) are imported only when chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.teachers.base import Completion, Request, RequestQueue, SamplingParams, Teacher, TeacherError
from pipeline.teachers.cache import CachedTeacher
from pipeline.teachers.config import EngineOptions, TeacherConfig
from pipeline.teachers.usage import Usage

if TYPE_CHECKING:
    from pipeline.teachers.runtime import EngineLog

__all__ = [
    "CachedTeacher",
    "Completion",
    "EngineOptions",
    "Request",
    "RequestQueue",
    "SamplingParams",
    "Teacher",
    "TeacherConfig",
    "TeacherError",
    "Usage",
    "make_teacher",
]


def make_teacher(
    config: TeacherConfig, cache_dir: Path | None = None, *, log: EngineLog | None = None
) -> Teacher:
    """The configured backend, wrapped with the run's request cache when `config.cache` and `cache_dir`.

    `log` is where an in-process engine writes vLLM's log lines (a run's `logs/engine.log`).
    """
    teacher: Teacher
    if config.backend == "vllm":
        from pipeline.teachers.vllm_local import VLLMTeacher

        teacher = VLLMTeacher(config, log=log)
    else:
        from pipeline.teachers.openai_compat import OpenAITeacher

        teacher = OpenAITeacher(config)
    if config.cache and cache_dir is not None:
        teacher = CachedTeacher(teacher, cache_dir)
    return teacher
