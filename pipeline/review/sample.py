"""Which tasks a reviewer sees, in which order, and which instance of each.

The sample is a seeded ordering of the run's kept tasks that is stratified at every prefix: tasks are
grouped by round (and by judge score where a judge scored them), shuffled within their group, and
interleaved systematically, so the first N tasks hold each group in proportion to its size. The ordering
is stored in review_sample.json the first time a seed is used: a run that grows later keeps its queues.

With several reviewers, the first `overlap` share of N is everyone's (agreement is measured there) and each
reviewer gets the next disjoint slice of the ordering for the rest. Each reviewer's queue is shuffled by
a seed of its own, so the shared tasks are spread through it. The one instance shown for a task is drawn
from the seed and the task id, the same for every reviewer, as the paper showed one random instance.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from pipeline.core.errors import UserError
from pipeline.core.jsonio import load_json_model, write_json_atomic
from pipeline.run.judgments import read_judgments, task_digest
from pipeline.run.reader import Run
from pipeline.run.schemas import MachineTask


class StoredSample(BaseModel):
    seed: int
    rounds_done: int
    strata: str
    order: list[str]
    created_at: float = Field(default_factory=time.time)


class SampleFile(BaseModel):
    samples: dict[str, StoredSample] = Field(default_factory=dict)


def stratified_order(strata: dict[str, tuple], seed: int) -> list[str]:
    """Task ids ordered so that every prefix holds each stratum in proportion to its size."""
    rng = random.Random(seed)
    groups: dict[tuple, list[str]] = defaultdict(list)
    for task_id, key in strata.items():
        groups[key].append(task_id)
    keyed: list[tuple[float, float, str]] = []
    for key in sorted(groups, key=repr):
        ids = sorted(groups[key])
        rng.shuffle(ids)
        offset = rng.random()
        keyed.extend(((rank + offset) / len(ids), rng.random(), tid) for rank, tid in enumerate(ids))
    return [tid for *_, tid in sorted(keyed)]


def task_strata(run_dir: str | Path, tasks: list[MachineTask]) -> tuple[dict[str, tuple], str]:
    """Each task's stratum (round, judge score where a current scored verdict exists) and a description."""
    judgments = read_judgments(run_dir)
    strata: dict[str, tuple] = {}
    scored = 0
    for task in tasks:
        verdict = judgments.get(task.id)
        score = None
        if verdict is not None and verdict.scored and verdict.task_digest == task_digest(task):
            score = verdict.score
            scored += 1
        strata[task.id] = (task.round, score)
    return strata, "round and judge score" if scored else "round"


def stored_order(run: Run, seed: int) -> StoredSample:
    """The seed's stored ordering, made and stored now if this is its first use."""
    path = run.review_sample_path
    stored = load_json_model(path, SampleFile) if path.is_file() else SampleFile()
    if str(seed) in stored.samples:
        return stored.samples[str(seed)]
    committed = run.committed()
    if not committed.tasks:
        raise UserError(f"{run.path}: the run has no kept tasks to review; run `selfinstruct generate` first")
    strata, described = task_strata(run.path, committed.tasks)
    sample = StoredSample(
        seed=seed, rounds_done=committed.rounds_done, strata=described, order=stratified_order(strata, seed)
    )
    stored.samples[str(seed)] = sample
    write_json_atomic(path, stored.model_dump(mode="json"))
    return sample


@dataclass(frozen=True)
class Queue:
    reviewer: str
    task_ids: list[str]
    shared: int  # how many of them every reviewer has
    short: bool  # the run had fewer tasks than the queue asked for


def queues(order: list[str], reviewers: list[str], size: int, overlap: float, seed: int) -> list[Queue]:
    """Each reviewer's queue of `size` tasks: the shared overlap, then a disjoint slice of its own."""
    if size < 1:
        raise UserError(f"--sample must be at least 1, got {size}")
    if not 0.0 <= overlap <= 1.0:
        raise UserError(f"--overlap must be between 0 and 1, got {overlap}")
    shared = round(overlap * size) if len(reviewers) > 1 else 0
    own = size - shared
    out = []
    for k, reviewer in enumerate(reviewers):
        ids = order[:shared] + order[shared + k * own : shared + (k + 1) * own]
        random.Random(f"{seed}:{reviewer}").shuffle(ids)
        out.append(Queue(reviewer, ids, min(shared, len(order)), len(ids) < size))
    return out


def shown_instance(task: MachineTask, seed: int) -> int:
    """The one instance a reviewer sees of `task`: the same for every reviewer of the seed."""
    return random.Random(f"{seed}:{task.id}").randrange(len(task.instances))
