"""`judge` on a run directory: score every kept task that has no current verdict from this judge.

Which tasks are asked:
- never a task this judge (identity and prompt version) already answered for its current text,
  scored or not (an unusable reply is final, and the cache would only hand it back);
- a task with no judgment, or whose requests only failed, or whose text changed since it was judged;
- with `rejudge_others` (the `judge` command), also a task whose current verdict came from another
  judge (model identity) or another prompt version: the latest judge's score becomes the current
  one, and the older lines stay in the file as history (a request of the new judge that fails leaves
  the older score current; `pipeline/run/judgments.py`). The per-round hook of `generate` passes
  False, so it only fills in new tasks and never overwrites a verdict a stronger judge gave.

Judgments are appended batch by batch, every request goes through the run's judge cache
(`cache/judge/`), so a killed `judge` resumes where it stopped and pays for no answer twice.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.locks import exclusive_lock
from pipeline.judge.calls import Breaker, ask_each
from pipeline.judge.config import JudgeConfig
from pipeline.judge.parse import TaskVerdict, Unusable, read_task_verdict
from pipeline.judge.prompts import JudgeTemplate, load_template, task_request
from pipeline.run.judgments import (
    Judgment,
    append_judgments,
    current_judgments,
    read_history,
    task_digest,
)
from pipeline.run.schemas import MachineTask, TeacherIdentity
from pipeline.teachers.base import Completion, Teacher

JUDGE_CACHE = ("cache", "judge")
LOCK_FILE = ".judge.lock"
REPLY_CHARS = 2000


class Progress(Protocol):
    """What the judge reports to: `generate`'s reporter and the `judge` command's display both fit."""

    def step(self, label: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


@dataclass
class JudgeOutcome:
    judge: TeacherIdentity
    prompt_version: str
    tasks: int
    asked: int
    counts: dict[str, int] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge.model_dump(),
            "prompt_version": self.prompt_version,
            "tasks": self.tasks,
            "asked": self.asked,
            "counts": self.counts,
            "usage": self.usage,
        }


def judge_cache_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).joinpath(*JUDGE_CACHE)


@contextlib.contextmanager
def judge_lock(run_dir: str | Path) -> Iterator[None]:
    """One judge at a time per run (two would append the same verdicts twice); freed when the process dies."""
    busy = f"{run_dir}: another judge is running on this run directory"
    with exclusive_lock(Path(run_dir) / LOCK_FILE, busy):
        yield


def answered_by(history: list[Judgment], judge: TeacherIdentity, prompt_version: str) -> set[tuple[str, str]]:
    """(task id, task digest) of every task this judge and prompt answered (scored or unscored)."""
    return {
        (j.task_id, j.task_digest)
        for j in history
        if j.status != "failed" and j.judge == judge and j.prompt_version == prompt_version
    }


def needs_judging(
    task: MachineTask, current: Judgment | None, answered: set[tuple[str, str]], rejudge_others: bool
) -> bool:
    """Whether to ask about `task` (the module docstring's rules); `answered` from `answered_by`."""
    digest = task_digest(task)
    if (task.id, digest) in answered:
        return False
    if current is None or current.status == "failed" or current.task_digest != digest:
        return True
    return rejudge_others  # the current verdict is another judge's (this one never answered)


def to_judgment(
    task: MachineTask, reply: Completion | Unusable, judge: TeacherIdentity, prompt_version: str
) -> Judgment:
    """The record of one answer: scored, unscored with what was wrong, or failed (asked again next time)."""
    base = {
        "task_id": task.id,
        "judge": judge,
        "prompt_version": prompt_version,
        "task_digest": task_digest(task),
    }
    if isinstance(reply, Unusable):
        return Judgment(status="failed", reason=str(reply), **base)
    text, finish = reply.texts[0], reply.finish_reasons[0]
    verdict = read_task_verdict(text, finish)
    if isinstance(verdict, TaskVerdict):
        return Judgment(
            status="scored",
            valid_instruction=verdict.valid_instruction,
            appropriate_input=verdict.appropriate_input,
            correct_output=verdict.correct_output,
            score=verdict.score,
            reason=verdict.reason,
            parsed=verdict.parsed,
            **base,
        )
    return Judgment(status="unscored", reason=str(verdict), reply=text[:REPLY_CHARS], **base)


def judge_tasks(
    run_dir: str | Path,
    tasks: list[MachineTask],
    teacher: Teacher,
    template: JudgeTemplate,
    config: JudgeConfig,
    progress: Progress | None = None,
    breaker: Breaker | None = None,
) -> Counter[str]:
    """Ask about `tasks` batch by batch, appending each batch's judgments; counts by status.

    When `breaker` opens (the judge is gone), what was answered is recorded and `JudgeUnavailable`
    is raised: the tasks never asked keep no line and are asked by the next run.
    """
    counts: Counter[str] = Counter()
    if progress is not None:
        progress.step("judge", len(tasks))
    on_done = progress.advance if progress is not None else None
    breaker = breaker or Breaker(config.max_failures_in_a_row)
    for start in range(0, len(tasks), config.batch_size):
        batch = tasks[start : start + config.batch_size]
        replies = ask_each(teacher, [task_request(template, t, config) for t in batch], on_done, breaker)
        judgments = [
            to_judgment(t, r, teacher.identity, template.version)
            for t, r in zip(batch, replies, strict=True)
            if r is not None
        ]
        append_judgments(run_dir, judgments)
        counts.update(j.status for j in judgments)
        if breaker.open:
            raise breaker.error(len(tasks) - counts.total())
    return counts


def judge_run(
    run_dir: str | Path,
    config: JudgeConfig,
    *,
    teacher: Teacher | None = None,
    progress: Progress | None = None,
    rejudge_others: bool = True,
) -> JudgeOutcome:
    """Judge the committed tasks of `run_dir` that need it (see the module docstring).

    `teacher` (an engine the caller owns, uncached) is used when given and left open; otherwise the
    configured judge is built here and closed. Either way the judge cache wraps it when `teacher.cache`.
    """
    from pipeline.run.reader import Run
    from pipeline.teachers import make_teacher
    from pipeline.teachers.cache import CachedTeacher
    from pipeline.teachers.preflight import check_reachable, unreachable_reason

    tasks = Run.open(run_dir).committed_tasks()
    template = load_template("task", config.template)
    own = teacher is None
    base = make_teacher(config.teacher) if teacher is None else teacher
    judge: Teacher = CachedTeacher(base, judge_cache_dir(run_dir)) if config.teacher.cache else base
    start = judge.usage.copy()
    try:
        with judge_lock(run_dir):
            history = read_history(run_dir)
            current = current_judgments(history)
            answered = answered_by(history, judge.identity, template.version)
            pending = [t for t in tasks if needs_judging(t, current.get(t.id), answered, rejudge_others)]
            counts: Counter[str] = Counter()
            if pending:
                check_reachable(config.teacher, "judge")
                breaker = Breaker(config.max_failures_in_a_row, lambda: unreachable_reason(config.teacher))
                counts = judge_tasks(run_dir, pending, judge, template, config, progress, breaker)
    finally:
        if own:
            judge.close()
    return JudgeOutcome(
        judge=judge.identity,
        prompt_version=template.version,
        tasks=len(tasks),
        asked=len(pending),
        counts=dict(counts),
        usage=judge.usage.since(start).as_dict(),
    )


def judge_new_tasks(
    run_dir: str | Path, judge_config: JudgeConfig, teacher: Teacher, progress: Progress | None = None
) -> JudgeOutcome:
    """The hook `generate` calls after each committed round: judge what has no verdict yet, nothing else."""
    return judge_run(run_dir, judge_config, teacher=teacher, progress=progress, rejudge_others=False)
