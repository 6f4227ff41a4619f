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
from pipeline.judge.config import JudgeConfig, judge_teacher_config
from pipeline.judge.parse import TaskVerdict, Unusable, read_task_verdict
from pipeline.judge.prompts import JudgeTemplate, judge_settings, load_template, task_request
from pipeline.judge.sample import sampled_instance, with_one_instance
from pipeline.judge.version import JudgeVersion, answered_by
from pipeline.run.judgments import (
    QUESTIONS,
    Judgment,
    append_judgments,
    current_judgments,
    read_history,
    task_digest,
)
from pipeline.run.schemas import MachineTask, TeacherIdentity
from pipeline.teachers.base import Completion, Request, Teacher

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
    reasons: dict[str, int] = field(default_factory=dict)
    """Why the asked tasks were asked (a setting that changed, a failed request, ...) and how many."""
    counts: dict[str, int] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge.model_dump(),
            "prompt_version": self.prompt_version,
            "tasks": self.tasks,
            "asked": self.asked,
            "reasons": self.reasons,
            "counts": self.counts,
            "usage": self.usage,
        }


def with_context(config: JudgeConfig) -> JudgeConfig:
    """`config` with the judge's context length filled in (`judge/context.py`), which the prompts fit."""
    from pipeline.judge.context import judge_context_tokens

    if config.context_tokens is not None:
        return config
    return config.model_copy(update={"context_tokens": judge_context_tokens(config.teacher)})


def judge_cache_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).joinpath(*JUDGE_CACHE)


@contextlib.contextmanager
def judge_lock(run_dir: str | Path) -> Iterator[None]:
    """One judge at a time per run (two would append the same verdicts twice); freed when the process dies."""
    busy = f"{run_dir}: another judge is running on this run directory"
    with exclusive_lock(Path(run_dir) / LOCK_FILE, busy):
        yield


def why_judged(
    task: MachineTask,
    current: Judgment | None,
    answered: set[tuple[str, str]],
    version: JudgeVersion,
    rejudge_others: bool,
) -> str | None:
    """Why to ask about `task` (the module docstring's rules), or None to leave it."""
    digest = task_digest(task)
    if (task.id, digest) in answered:
        return None
    if current is None:
        return "not judged yet"
    if current.status == "failed":
        return "the last request failed"
    if current.task_digest != digest:
        return "the task's text changed"
    if not rejudge_others:
        return None
    return "; ".join(version.differences(current)) or "another judge"


def to_judgment(
    task: MachineTask,
    reply: Completion | Unusable,
    version: JudgeVersion,
    sample: tuple[int, Completion | Unusable] | None = None,
) -> Judgment:
    """The record of one task's answers: scored, unscored with what was wrong, or failed (asked again
    next time). `sample` is (instance index, the answer about that instance alone) for a task with
    several instances; a one-instance task's answer serves both (`pipeline.judge.sample`)."""
    base = {
        "task_id": task.id,
        "judge": version.judge,
        "prompt_version": version.prompt_version,
        "settings": version.settings,
        "task_digest": task_digest(task),
    }
    index, one = sample if sample is not None else (0, reply)
    for answer in (reply, one):
        if isinstance(answer, Unusable):
            return Judgment(status="failed", reason=str(answer), **base)
    assert isinstance(reply, Completion) and isinstance(one, Completion)
    verdict = read_task_verdict(reply.texts[0], reply.finish_reasons[0])
    sampled = read_task_verdict(one.texts[0], one.finish_reasons[0]) if one is not reply else verdict
    for got, answer, what in ((verdict, reply, ""), (sampled, one, "the sampled instance: ")):
        if not isinstance(got, TaskVerdict):
            return Judgment(
                status="unscored", reason=what + str(got), reply=answer.texts[0][:REPLY_CHARS], **base
            )
    assert isinstance(verdict, TaskVerdict) and isinstance(sampled, TaskVerdict)
    return Judgment(
        status="scored",
        valid_instruction=verdict.valid_instruction,
        appropriate_input=verdict.appropriate_input,
        correct_output=verdict.correct_output,
        score=verdict.score,
        reason=verdict.reason,
        parsed=verdict.parsed,
        sampled_instance=index,
        sampled={q: getattr(sampled, q) for q in QUESTIONS},
        **base,
    )


def _requests(
    batch: list[MachineTask], template: JudgeTemplate, config: JudgeConfig
) -> tuple[list[Request], list[tuple[int, int | None, int]]]:
    """Each task's request, plus one about its sampled instance when it has several; per task (its
    request's position, the sampled request's position or None, the sampled index)."""
    requests: list[Request] = []
    where: list[tuple[int, int | None, int]] = []
    for task in batch:
        index = sampled_instance(task, config.seed)
        first, second = len(requests), None
        requests.append(task_request(template, task, config))
        if len(task.instances) > 1:
            second = len(requests)
            requests.append(task_request(template, with_one_instance(task, index), config))
        where.append((first, second, index))
    return requests, where


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
        progress.step("judge", sum(1 + (len(t.instances) > 1) for t in tasks))
    on_done = progress.advance if progress is not None else None
    breaker = breaker or Breaker(config.max_failures_in_a_row)
    version = JudgeVersion(teacher.identity, template.version, judge_settings(config))
    for start in range(0, len(tasks), config.batch_size):
        batch = tasks[start : start + config.batch_size]
        requests, where = _requests(batch, template, config)
        replies = ask_each(teacher, requests, on_done, breaker)
        judgments = []
        for task, (first, second, index) in zip(batch, where, strict=True):
            reply, one = replies[first], replies[second] if second is not None else None
            if reply is None or (second is not None and one is None):
                continue  # never asked: the breaker opened
            sample = (index, one) if one is not None else None
            judgments.append(to_judgment(task, reply, version, sample))
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
    check_reachable(config.teacher, "judge")
    config = with_context(config)
    own = teacher is None
    base = make_teacher(judge_teacher_config(config)) if teacher is None else teacher
    judge: Teacher = CachedTeacher(base, judge_cache_dir(run_dir)) if config.teacher.cache else base
    start = judge.usage.copy()
    try:
        with judge_lock(run_dir):
            history = read_history(run_dir)
            current = current_judgments(history)
            version = JudgeVersion(judge.identity, template.version, judge_settings(config))
            answered = answered_by(history, version)
            why = {t.id: why_judged(t, current.get(t.id), answered, version, rejudge_others) for t in tasks}
            pending = [t for t in tasks if why[t.id] is not None]
            counts: Counter[str] = Counter()
            if pending:
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
        reasons=dict(Counter(why[t.id] for t in pending).most_common()),
        counts=dict(counts),
        usage=judge.usage.since(start).as_dict(),
    )


def judge_new_tasks(
    run_dir: str | Path, judge_config: JudgeConfig, teacher: Teacher, progress: Progress | None = None
) -> JudgeOutcome:
    """The hook `generate` calls after each committed round: judge what has no verdict yet, nothing else."""
    return judge_run(run_dir, judge_config, teacher=teacher, progress=progress, rejudge_others=False)
