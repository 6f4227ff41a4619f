"""Judging inside `generate`: each committed round's new tasks are scored before the next round starts.

`round_judge` gives `generate` the teacher to run with and the `after_commit` callback for the round
protocol. When the judge is the generation model itself in-process (the default: both bundled, both
vllm), it shares the one engine instead of loading a second copy; its own `Usage` keeps the judge's
tokens out of the generation's figures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.judge.config import JudgeConfig
from pipeline.judge.runner import Progress, judge_new_tasks
from pipeline.teachers.base import Teacher
from pipeline.teachers.config import TeacherConfig

AfterCommit = Callable[[Any], None]


def shares_engine(generation: TeacherConfig, judge: TeacherConfig) -> bool:
    """True when the judge is the same model in the same in-process engine as the generation teacher."""
    from pipeline.core.model import resolve_model

    if generation.backend != "vllm" or judge.backend != "vllm":
        return False
    return resolve_model(generation.model) == resolve_model(judge.model)


@contextlib.contextmanager
def round_judge(
    generation: TeacherConfig, judge: JudgeConfig, run_dir: str | Path, progress: Progress | None = None
) -> Iterator[tuple[Teacher | None, AfterCommit | None]]:
    """(teacher for `run_generation`, `after_commit` hook), or (None, None) when `judge.enabled` is off."""
    if not judge.enabled:
        yield None, None
        return
    from pipeline.teachers import make_teacher

    teacher = make_teacher(generation)  # uncached: run_generation adds the run's cache
    judge_teacher: Teacher | None = None
    own_judge = False

    def after_commit(_state: Any) -> None:
        nonlocal judge_teacher, own_judge
        if judge_teacher is None:
            if shares_engine(generation, judge.teacher):
                from pipeline.teachers.vllm_local import VLLMTeacher

                assert isinstance(teacher, VLLMTeacher)
                judge_teacher = VLLMTeacher(judge.teacher, llm=teacher.llm)
            else:
                judge_teacher, own_judge = make_teacher(judge.teacher), True
        judge_new_tasks(run_dir, judge, judge_teacher, progress)

    try:
        yield teacher, after_commit
    finally:
        if judge_teacher is not None and own_judge:
            judge_teacher.close()
        teacher.close()
