"""Judging inside `generate`: each committed round's new tasks are scored before the next round starts.

`round_judge` gives `generate` the `after_commit(state, teacher)` callback that the run protocol calls
after each commit (None when `judge.enabled` is off). When the judge is the generation model itself
in-process (the default: both bundled, both vllm), it shares the generation's engine instead of
loading a second copy; its own `Usage` keeps the judge's tokens out of the generation's figures.

A judge that is gone (its pre-flight check fails, or its breaker opens) must not hold up the run: the
hook warns once, stops judging for the rest of the invocation and leaves the tasks unjudged for a
later `selfinstruct judge RUN`; generation carries on within its budget.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.core.warncapture import PipelineWarning
from pipeline.judge.config import JudgeConfig, judge_teacher_config
from pipeline.judge.runner import Progress, judge_new_tasks
from pipeline.teachers.base import Teacher, TeacherError
from pipeline.teachers.config import TeacherConfig

AfterCommit = Callable[[Any, Teacher], None]


class JudgeStoppedWarning(PipelineWarning):
    """The per-round judge failed; generation goes on without it."""


def shares_engine(generation: TeacherConfig, judge: TeacherConfig) -> bool:
    """True when the judge is the same model in the same in-process engine as the generation teacher."""
    from pipeline.core.model import resolve_model

    if generation.backend != "vllm" or judge.backend != "vllm":
        return False
    return resolve_model(generation.model) == resolve_model(judge.model)


def _shared(teacher: Teacher, judge: TeacherConfig) -> Teacher | None:
    """A judge on the generation's own vLLM engine (its cache wrapper taken off), or None.

    The engine's options are the generation's, not the judge config's: the judge's identity records
    the dtype that actually runs.
    """
    from pipeline.teachers.cache import CachedTeacher
    from pipeline.teachers.vllm_local import VLLMTeacher

    engine = teacher.inner if isinstance(teacher, CachedTeacher) else teacher
    if not isinstance(engine, VLLMTeacher):
        return None
    on_engine = judge.model_copy(update={"engine": engine.config.engine})
    return VLLMTeacher(on_engine, llm=engine.llm, machine=engine.machine)


@contextlib.contextmanager
def round_judge(
    generation: TeacherConfig, judge: JudgeConfig, run_dir: str | Path, progress: Progress | None = None
) -> Iterator[AfterCommit | None]:
    """The `after_commit` hook for `run_generation`, or None when `judge.enabled` is off."""
    if not judge.enabled:
        yield None
        return
    judge_teacher: Teacher | None = None
    own = False
    stopped = False

    def after_commit(_state: Any, teacher: Teacher) -> None:
        nonlocal judge_teacher, own, stopped
        if stopped:
            return
        if judge_teacher is None:
            if shares_engine(generation, judge.teacher):
                judge_teacher = _shared(teacher, judge.teacher)
            if judge_teacher is None:
                from pipeline.teachers import make_teacher

                judge_teacher, own = make_teacher(judge_teacher_config(judge)), True
        try:
            judge_new_tasks(run_dir, judge, judge_teacher, progress)
        except TeacherError as exc:
            stopped = True
            warnings.warn(
                f"judging stopped for the rest of this run: {exc}. Generation goes on; "
                f"`selfinstruct judge {run_dir}` judges the tasks left without a verdict",
                JudgeStoppedWarning,
                stacklevel=2,
            )

    try:
        yield after_commit
    finally:
        if judge_teacher is not None and own:
            judge_teacher.close()
