"""What the review page asks and where each answer goes: one session class per mode.

`TaskReview` serves a run's sample (the paper's three questions on one instance a task); `PairReview`
serves the blind A/B of an evaluation (A-D for each answer, then a preference). Both give the page only
what a reviewer must see, append each decision to reviews.jsonl before they answer, and resume a
reviewer at the first item of their queue they have neither labelled nor skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.jsonio import write_json_atomic
from pipeline.review.labels import HUMAN_QUESTIONS, RATINGS, PairLabel, ReviewStore, TaskLabel
from pipeline.review.pairs import BlindItem, blind_items, eval_id, load_eval
from pipeline.review.sample import queues, shown_instance, stored_order
from pipeline.review.stats import LABELS, judge_pair_agreement, pairwise_summary
from pipeline.run.judgments import task_digest
from pipeline.run.reader import Run

YES_NO = [
    {"value": True, "text": "Yes", "key": "y", "cls": "yes"},
    {"value": False, "text": "No", "key": "n", "cls": "no"},
]
TASK_HELP = (
    "y / n answers the highlighted question; the third answer saves and moves on. "
    "← back, → or s skip, Backspace undoes an answer, / writes a note."
)
PAIR_HELP = (
    "a-d rates the highlighted answer (first, then second); 1 prefers the first, 2 the second, t a tie. "
    "The last of the three saves and moves on. ← back, → or s skip, Backspace undoes, / writes a note."
)


class BadRequest(UserError):
    """A request the page should not have sent (an unknown reviewer, an item out of range)."""


@dataclass
class TaskReview:
    run_dir: Path
    reviewers: list[str]
    size: int
    seed: int
    overlap: float
    mode: str = "tasks"
    store: ReviewStore = field(init=False)

    def __post_init__(self) -> None:
        run = Run.open(self.run_dir)
        sample = stored_order(run, self.seed)
        self.strata = sample.strata
        self.pool = len(sample.order)
        self.store = ReviewStore(self.run_dir)
        self.tasks = {t.id: t for t in run.committed_tasks()}
        self.queues = {
            q.reviewer: q for q in queues(sample.order, self.reviewers, self.size, self.overlap, self.seed)
        }

    def title(self) -> str:
        return f"Review of {self.run_dir.name}: tasks"

    def total(self, reviewer: str) -> int:
        return len(self._queue(reviewer))

    def _queue(self, reviewer: str) -> list[str]:
        if reviewer not in self.queues:
            raise BadRequest(
                f"unknown reviewer {reviewer!r}; this server reviews as {', '.join(self.queues)}"
            )
        return self.queues[reviewer].task_ids

    def _task_at(self, reviewer: str, k: int) -> str:
        queue = self._queue(reviewer)
        if not 0 <= k < len(queue):
            raise BadRequest(f"item {k} is out of range (0..{len(queue) - 1})")
        return queue[k]

    def questions(self) -> list[dict[str, Any]]:
        return [{"key": q, "label": LABELS[q] + "?", "choices": YES_NO} for q in HUMAN_QUESTIONS]

    def item(self, reviewer: str, k: int) -> dict[str, Any]:
        task = self.tasks[self._task_at(reviewer, k)]
        shown = shown_instance(task, self.seed)
        instance = task.instances[shown]
        label = {(lab.task_id): lab for lab in self.store.task_labels() if lab.reviewer == reviewer}.get(
            task.id
        )
        seen = task.id in self.store.seen(reviewer, "task")
        return {
            "k": k,
            "total": self.total(reviewer),
            "task_id": task.id,
            "instruction": task.instruction,
            "input": instance.input,
            "output": instance.output,
            "instance_number": shown + 1,
            "instances": len(task.instances),
            "status": "labelled" if label else "skipped" if seen else "new",
            "given": {q: getattr(label, q) for q in HUMAN_QUESTIONS} if label else {},
            "note": label.note if label else "",
        }

    def answer(self, reviewer: str, k: int, body: dict[str, Any]) -> None:
        task = self.tasks[self._task_at(reviewer, k)]
        answers = {}
        for q in HUMAN_QUESTIONS:
            if not isinstance(body.get(q), bool):
                raise BadRequest(f"{q}: expected true or false")
            answers[q] = body[q]
        self.store.append([self._label(reviewer, task.id, note=str(body.get("note", "")), **answers)])

    def skip(self, reviewer: str, k: int) -> None:
        self.store.append([self._label(reviewer, self._task_at(reviewer, k), status="skipped")])

    def _label(self, reviewer: str, task_id: str, **fields: Any) -> TaskLabel:
        task = self.tasks[task_id]
        return TaskLabel(
            reviewer=reviewer,
            task_id=task_id,
            task_digest=task_digest(task),
            instance=shown_instance(task, self.seed),
            sample_seed=self.seed,
            **fields,
        )

    def progress(self, reviewer: str) -> dict[str, int]:
        queue = self._queue(reviewer)
        labelled = {lab.task_id for lab in self.store.task_labels() if lab.reviewer == reviewer}
        seen = self.store.seen(reviewer, "task")
        done = sum(t in labelled for t in queue)
        return {"total": len(queue), "labelled": done, "skipped": sum(t in seen for t in queue) - done}

    def resume(self, reviewer: str) -> int:
        seen = self.store.seen(reviewer, "task")
        queue = self._queue(reviewer)
        return next((k for k, t in enumerate(queue) if t not in seen), len(queue))

    def labelled(self, reviewer: str) -> int:
        return self.progress(reviewer)["labelled"]


@dataclass
class PairReview:
    run_dir: Path
    eval_path: Path
    reviewers: list[str]
    seed: int
    mode: str = "pairs"
    store: ReviewStore = field(init=False)

    def __post_init__(self) -> None:
        Run.open(self.run_dir)
        self.eval_path, report = load_eval(self.eval_path)
        self.eval_id = eval_id(report)
        self.items: list[BlindItem] = blind_items(report, self.seed)
        self.store = ReviewStore(self.run_dir)

    def title(self) -> str:
        return f"Blind comparison: {len(self.items)} tasks"

    def total(self, reviewer: str) -> int:
        self._check(reviewer)
        return len(self.items)

    def _check(self, reviewer: str) -> None:
        if reviewer not in self.reviewers:
            raise BadRequest(
                f"unknown reviewer {reviewer!r}; this server reviews as {', '.join(self.reviewers)}"
            )

    def _item_at(self, reviewer: str, k: int) -> BlindItem:
        self._check(reviewer)
        if not 0 <= k < len(self.items):
            raise BadRequest(f"item {k} is out of range (0..{len(self.items) - 1})")
        return self.items[k]

    def questions(self) -> list[dict[str, Any]]:
        ratings = [{"value": r, "text": r, "key": r.lower(), "title": d} for r, d in RATINGS.items()]
        prefer = [
            {"value": "first", "text": "First", "key": "1"},
            {"value": "second", "text": "Second", "key": "2"},
            {"value": "tie", "text": "Tie", "key": "t"},
        ]
        return [
            {"key": "rating_first", "label": "First answer: rating", "choices": ratings},
            {"key": "rating_second", "label": "Second answer: rating", "choices": ratings},
            {"key": "preference", "label": "Which answer is better?", "choices": prefer},
        ]

    def _labels(self, reviewer: str) -> dict[str, PairLabel]:
        return {lab.task_id: lab for lab in self.store.pair_labels(self.eval_id) if lab.reviewer == reviewer}

    def item(self, reviewer: str, k: int) -> dict[str, Any]:
        item = self._item_at(reviewer, k)
        label = self._labels(reviewer).get(item.task_id)
        seen = item.task_id in self.store.seen(reviewer, "pair", self.eval_id)
        keys = ("rating_first", "rating_second", "preference")
        return {
            "k": k,
            "total": len(self.items),
            "task_id": item.task_id,
            "instruction": item.instruction,
            "input": item.input,
            "answers": [item.first_text, item.second_text],
            "status": "labelled" if label else "skipped" if seen else "new",
            "given": {key: getattr(label, key) for key in keys} if label else {},
            "note": label.note if label else "",
        }

    def answer(self, reviewer: str, k: int, body: dict[str, Any]) -> None:
        item = self._item_at(reviewer, k)
        if body.get("rating_first") not in RATINGS or body.get("rating_second") not in RATINGS:
            raise BadRequest("rate both answers A, B, C or D")
        if body.get("preference") not in ("first", "second", "tie"):
            raise BadRequest("preference: expected first, second or tie")
        fields = {key: body[key] for key in ("rating_first", "rating_second", "preference")}
        self.store.append([self._label(reviewer, item, note=str(body.get("note", "")), **fields)])
        self.write_human()

    def skip(self, reviewer: str, k: int) -> None:
        self.store.append([self._label(reviewer, self._item_at(reviewer, k), status="skipped")])

    def _label(self, reviewer: str, item: BlindItem, **fields: Any) -> PairLabel:
        return PairLabel(
            reviewer=reviewer,
            eval_id=self.eval_id,
            eval_path=_relative(self.eval_path, self.run_dir),
            task_id=item.task_id,
            pair_digest=item.pair_digest,
            first=item.first,
            order_seed=self.seed,
            **fields,
        )

    def human(self) -> dict[str, Any]:
        """The people's result for this evaluation (what `eval.json`'s `human` key holds)."""
        _, report = load_eval(self.eval_path)
        labels = [lab for lab in self.store.pair_labels(self.eval_id)]
        summary = pairwise_summary(labels, seed=self.seed)
        return {"eval_id": self.eval_id, **summary, "judge_agreement": judge_pair_agreement(report, summary)}

    def write_human(self) -> dict[str, Any]:
        _, report = load_eval(self.eval_path)
        report["human"] = self.human()
        write_json_atomic(self.eval_path, report)
        return report["human"]

    def progress(self, reviewer: str) -> dict[str, int]:
        done = len(self._labels(reviewer))
        seen = len(self.store.seen(reviewer, "pair", self.eval_id) & {i.task_id for i in self.items})
        return {"total": len(self.items), "labelled": done, "skipped": seen - done}

    def resume(self, reviewer: str) -> int:
        seen = self.store.seen(reviewer, "pair", self.eval_id)
        return next((k for k, i in enumerate(self.items) if i.task_id not in seen), len(self.items))

    def labelled(self, reviewer: str) -> int:
        return len(self._labels(reviewer))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
