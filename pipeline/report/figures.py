"""The figures of a run, computed from its files: what the pipeline kept, what it threw away and why.

Everything is read through the run's one reader (`pipeline.run.reader.Run`: config.yaml, the
committed records of machine_tasks.jsonl and rejected.jsonl, the typed summary.json) and returned as
plain JSON-ready dicts, so that the HTML report, the dataset card and `report --json` show the same
numbers, and a test can check each one against the files. Counts of kept and rejected records come
from the JSONL files themselves (the record of truth); requests, candidates, tokens and timings exist
only in summary.json and come from there.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.report.context import student_figures
from pipeline.report.human import human_figures
from pipeline.report.public import display_path, hub_model_id, public_config
from pipeline.run.judgments import judgment_figures, read_judgments
from pipeline.run.reader import Run
from pipeline.run.rundir import TASK_STAGES
from pipeline.run.schemas import MachineTask, Rejection, SeedTask, TeacherIdentity
from pipeline.run.summary import RunSummary

# TASK_STAGES (from the run directory's writer) are the stages whose records are whole candidate
# tasks, in funnel order: candidates = kept + their records. Other stages are not candidates: "parse"
# records a reply problem (no usable instruction list), "instance_dropped" an instance dropped from a
# task that was kept.
REPLY_STAGES = ("parse",)
STAGE_LABELS = {
    "parse": "reply parse problems",
    "instruction": "instruction filters",
    "classify": "classification step",
    "instance": "instance filters",
    "dedup": "ROUGE-L dedup",
    "instance_dropped": "instances dropped from kept tasks",
}
NOVELTY_BINS = 20
LENGTH_BINS = 25
EXAMPLE_CHARS = 300


@dataclass
class RunData:
    """What the report shows of a run: its committed records and summary, read once through `Run`."""

    source: Run
    config: dict[str, Any]
    config_text: str
    summary: RunSummary
    tasks: list[MachineTask]
    rejections: list[Rejection]
    notes: list[str] = field(default_factory=list)
    rounds_done: int = 0

    @property
    def run_dir(self) -> Path:
        return self.source.path


# ---------------------------------------------------------------------------------------------- I/O


def load_run(run_dir: str | Path) -> RunData:
    """Read a run for the report; a missing or broken file is a `UserError` naming it."""
    run = Run.open(run_dir)
    summary = run.summary()
    notes: list[str] = []
    config = run.read_config()
    if config is None:
        notes.append("config.yaml is missing: settings are not shown")
    committed = run.committed()
    if not run.tasks_path.is_file():
        # The writer appends only kept tasks, so a run that kept none has no file: report its rejections.
        notes.append("the run has kept no task yet, so machine_tasks.jsonl does not exist")
    if not run.rejected_path.is_file():
        notes.append("rejected.jsonl is missing: no rejections are shown")
    if committed.left_out:
        notes.append(
            f"{committed.left_out} record(s) of round {committed.rounds_done + 1}, not committed (the run was "
            "stopped during it), are left out; rerun `selfinstruct generate` to finish that round"
        )
    return RunData(
        source=run,
        config=config or {},
        config_text=run.config_text(),
        summary=summary,
        tasks=committed.tasks,
        rejections=committed.rejections,
        notes=notes,
        rounds_done=committed.rounds_done,
    )


# ------------------------------------------------------------------------------------- the figures


def stage_counts(rejections: list[Rejection]) -> dict[str, int]:
    """Rejection records per stage: reply stages, then task stages in funnel order, then the rest."""
    counts = Counter(r.stage for r in rejections)
    known = [*REPLY_STAGES, *TASK_STAGES]
    ordered = [s for s in known if s in counts] + [s for s in counts if s not in known]
    return {stage: counts[stage] for stage in ordered}


def funnel(run: RunData) -> dict[str, Any]:
    """Requests -> candidates -> each task stage's rejections -> kept, each step with what is left.

    Reply parse problems and instances dropped from kept tasks are shown beside the funnel, not in
    it: neither is a candidate task.
    """
    totals = run.summary.totals
    candidates = totals.candidates
    by_stage = stage_counts(run.rejections)
    steps: list[dict[str, Any]] = [
        {"step": "teacher requests (all kinds)", "stage": None, "count": totals.requests},
        {"step": "candidate instructions", "stage": None, "count": candidates},
    ]
    remaining = candidates
    for stage in TASK_STAGES:
        removed = by_stage.get(stage, 0)
        remaining -= removed
        steps.append(
            {
                "step": f"rejected: {STAGE_LABELS[stage]}",
                "stage": stage,
                "removed": removed,
                "count": remaining,
            }
        )
    kept = len(run.tasks)
    steps.append({"step": "kept tasks", "stage": None, "count": kept})
    side = {stage: n for stage, n in by_stage.items() if stage not in TASK_STAGES}
    return {
        "steps": steps,
        "requests": steps[0]["count"],
        "candidates": candidates,
        "rejected_by_stage": by_stage,
        "rejected_tasks": sum(by_stage.get(stage, 0) for stage in TASK_STAGES),
        "other_records": [
            {"stage": stage, "label": STAGE_LABELS.get(stage, stage), "count": n} for stage, n in side.items()
        ],
        "rejected": sum(by_stage.values()),
        "kept": kept,
        "kept_share_of_candidates": kept / candidates if candidates else None,
        "unaccounted": remaining - kept,
    }


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _example(rejection: Rejection) -> str:
    """The rejected instruction, or for a reply with none, the record's candidate details."""
    if rejection.instruction.strip():
        return _clip(rejection.instruction)
    return _clip(json.dumps(rejection.candidate, ensure_ascii=False))


def _detail(rejection: Rejection) -> str:
    """What the record holds beyond the instruction: the reply, the bad instance, the near-duplicate."""
    cand = rejection.candidate
    if not rejection.instruction.strip():
        return ""
    if isinstance(cand.get("most_similar"), dict) and cand["most_similar"]:
        text, score = next(iter(cand["most_similar"].items()))
        return _clip(f"ROUGE-L {float(score):.2f} with: {text}", 200)
    if isinstance(cand.get("instance"), dict):
        inst = cand["instance"]
        return _clip(f"input: {inst.get('input', '')!r} output: {inst.get('output', '')!r}", 200)
    if isinstance(cand.get("instances"), list) and cand["instances"]:
        inst = cand["instances"][0] if isinstance(cand["instances"][0], dict) else {}
        return _clip(
            f"first instance: input {inst.get('input', '')!r}, output {inst.get('output', '')!r}", 200
        )
    for key in ("reply", "text"):
        if isinstance(cand.get(key), str) and cand[key].strip():
            return _clip(f"reply: {cand[key]}", 200)
    return ""


def rejection_reasons(rejections: list[Rejection]) -> list[dict[str, Any]]:
    """Each reason code: how many rejected records carry it, at which stages, and the first example."""
    counts: Counter[str] = Counter()
    stages: dict[str, Counter[str]] = {}
    first: dict[str, Rejection] = {}
    for rejection in rejections:
        for reason in dict.fromkeys(rejection.reasons):
            counts[reason] += 1
            stages.setdefault(reason, Counter())[rejection.stage] += 1
            first.setdefault(reason, rejection)
    total = len(rejections)
    return [
        {
            "reason": reason,
            "count": count,
            "share_of_rejected": count / total if total else 0.0,
            "stages": dict(stages[reason].most_common()),
            "example": _example(first[reason]),
            "detail": _detail(first[reason]),
            "example_round": first[reason].round,
        }
        for reason, count in counts.most_common()
    ]


def histogram(values: list[float], edges: list[float]) -> list[dict[str, Any]]:
    """Counts per bin [lo, hi), the last bin closed; every value inside the edges lands in one bin."""
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=np.asarray(edges, dtype=float))
    return [
        {"lo": float(lo), "hi": float(hi), "count": int(c)}
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]


def describe(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "min": None, "median": None, "mean": None, "max": None}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "max": max(values),
    }


def novelty(
    instructions: list[str],
    seed_instructions: list[str],
    *,
    tokenizer: str = "rouge",
    bins: int = NOVELTY_BINS,
    closest: int = 5,
    on_done: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """ROUGE-L of each kept instruction to its most similar seed instruction (the paper's Figure 3)."""
    from pipeline.quality.rouge import max_against

    scores: list[float] = []
    nearest: list[int] = []
    for text in instructions:
        score, _, ref = max_against([text], seed_instructions, tokenizer=tokenizer)
        scores.append(score)
        nearest.append(ref)
        if on_done is not None:
            on_done(1)
    edges = [round(k / bins, 10) for k in range(bins + 1)]
    order = sorted(range(len(scores)), key=lambda k: -scores[k])[:closest]
    return {
        "tokenizer": tokenizer,
        "seeds": len(seed_instructions),
        "scores": describe(scores),
        "histogram": histogram(scores, edges),
        "above_0_5": sum(s > 0.5 for s in scores),
        "closest": [
            {
                "instruction": instructions[k],
                "seed": seed_instructions[nearest[k]] if nearest[k] >= 0 else "",
                "score": scores[k],
            }
            for k in order
        ],
    }


def _word_count(text: str) -> int:
    return len(text.split())


def length_figures(values: list[int], bins: int = LENGTH_BINS) -> dict[str, Any]:
    """Word-count statistics and a histogram with whole-word bins starting at 0."""
    out = describe([float(v) for v in values])
    if not values:
        out["histogram"] = []
        return out
    width = max(1, -(-(max(values) + 1) // bins))
    edges = [float(width * k) for k in range(-(-(max(values) + 1) // width) + 1)]
    out["histogram"] = histogram([float(v) for v in values], edges)
    return out


def lengths(tasks: list[MachineTask]) -> dict[str, Any]:
    """Words per instruction, per non-empty input and per output (instances counted one by one)."""
    return {
        "instruction": length_figures([_word_count(t.instruction) for t in tasks]),
        "input": length_figures(
            [_word_count(i.input) for t in tasks for i in t.instances if i.input.strip()]
        ),
        "output": length_figures([_word_count(i.output) for t in tasks for i in t.instances]),
    }


def shares(tasks: list[MachineTask]) -> dict[str, Any]:
    """How many kept tasks are classification tasks, and how many take an input."""
    n = len(tasks)
    instances = [i for t in tasks for i in t.instances]
    classification = sum(t.is_classification for t in tasks)
    with_input = sum(any(i.input.strip() for i in t.instances) for t in tasks)
    instances_with_input = sum(bool(i.input.strip()) for i in instances)
    return {
        "tasks": n,
        "classification": classification,
        "classification_share": classification / n if n else 0.0,
        "with_input": with_input,
        "with_input_share": with_input / n if n else 0.0,
        "instances": len(instances),
        "instances_with_input": instances_with_input,
        "instances_with_input_share": instances_with_input / len(instances) if instances else 0.0,
        "instances_per_task": len(instances) / n if n else 0.0,
    }


ROUND_FIELDS = (
    "requests",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "seconds",
    "tokens_per_s",
    "candidates",
    "kept",
)


def evolution(run: RunData) -> dict[str, Any] | None:
    """evol-instruct: the share of evolutions kept, per operation and per depth (None for other methods).

    Every whole candidate of an evol-instruct round, kept or rejected, names its evolution (the kept
    task in `evolution`, a rejection in its candidate record), so the shares need no other file."""
    kept = [t.evolution.model_dump() for t in run.tasks if t.evolution is not None]
    rejected = [
        r.candidate["evolution"]
        for r in run.rejections
        if r.stage in TASK_STAGES and isinstance(r.candidate.get("evolution"), dict)
    ]
    if not kept and not rejected:
        return None

    def table(field_name: str) -> list[dict[str, Any]]:
        tried = Counter(e[field_name] for e in kept + rejected)
        won = Counter(e[field_name] for e in kept)
        return [
            {field_name: key, "tried": n, "kept": won[key], "share": won[key] / n}
            for key, n in sorted(tried.items(), key=lambda kv: str(kv[0]) if field_name != "depth" else kv[0])
        ]

    return {"by_operation": table("operation"), "by_depth": table("depth")}


def rounds(run: RunData) -> dict[str, Any]:
    """Per round: the teacher's work (tokens, cost, time, tokens/s) from summary.json, and the files'
    kept and rejected counts beside summary.json's own, so that a mismatch shows."""
    kept_in_files = Counter(t.round for t in run.tasks)
    rejected_in_files = Counter(r.round for r in run.rejections)
    rows = []
    for entry in sorted(run.summary.rounds, key=lambda r: r.round):
        row: dict[str, Any] = {"round": entry.round, **{key: getattr(entry, key) for key in ROUND_FIELDS}}
        row["rejected_reasons"] = dict(entry.rejected)
        row["kept_in_files"] = kept_in_files.get(entry.round, 0)
        row["rejected_in_files"] = rejected_in_files.get(entry.round, 0)
        rows.append(row)
    totals: dict[str, Any] = {key: getattr(run.summary.totals, key) for key in ROUND_FIELDS}
    totals["kept_in_files"] = len(run.tasks)
    totals["rejected_in_files"] = len(run.rejections)
    entries = run.summary.rounds
    startups = [r.startup_s for r in entries if r.startup_s > 0]
    timing = {
        "wall_s": round(sum(r.wall_s for r in entries) + sum(startups), 3),
        "startup_s": round(sum(startups), 3),
        "invocations": len(startups),
    }
    return {"rows": rows, "totals": totals, "count": len(rows), "timing": timing}


def sample_tasks(
    tasks: list[MachineTask], n: int, seed: int = 0, max_instances: int = 2
) -> list[dict[str, Any]]:
    """A reproducible random sample of kept tasks, in file order."""
    if n <= 0 or not tasks:
        return []
    picked = sorted(random.Random(seed).sample(range(len(tasks)), min(n, len(tasks))))
    out = []
    for index in picked:
        task = tasks[index]
        out.append(
            {
                "id": task.id,
                "round": task.round,
                "instruction": task.instruction,
                "is_classification": task.is_classification,
                "instances": [i.model_dump() for i in task.instances[:max_instances]],
                "more_instances": max(0, len(task.instances) - max_instances),
            }
        )
    return out


def consistency(run: RunData, funnel_figures: dict[str, Any]) -> list[str]:
    """Where summary.json and the record files disagree (a run killed between the two writes, say)."""
    notes = []
    kept_total = run.summary.kept_total
    if kept_total != len(run.tasks):
        notes.append(
            f"summary.json counts {kept_total} kept tasks; machine_tasks.jsonl holds {len(run.tasks)}"
        )
    by_stage = run.summary.totals.rejected_by_stage
    files = funnel_figures["rejected_by_stage"]
    for stage in sorted(set(by_stage) | set(files)):
        if by_stage.get(stage, 0) != files.get(stage, 0):
            notes.append(
                f"summary.json counts {by_stage.get(stage, 0)} rejections at stage {stage!r}; "
                f"rejected.jsonl holds {files.get(stage, 0)}"
            )
    if funnel_figures["unaccounted"] != 0:
        notes.append(
            f"candidates minus rejections leaves {funnel_figures['unaccounted'] + funnel_figures['kept']}, "
            f"but {funnel_figures['kept']} tasks are kept"
        )
    return notes


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def overview(run: RunData, seeds_path: Path, seed_count: int) -> dict[str, Any]:
    summary = run.summary
    teacher = summary.teacher or (run.tasks[0].teacher if run.tasks else None)
    unknown = dict.fromkeys(TeacherIdentity.model_fields, "")
    totals = summary.totals
    return {
        "run": run.run_dir.name,
        "run_dir": str(run.run_dir),
        "method": summary.method,
        "teacher": teacher.model_dump() if teacher else unknown,
        "seeds_path": str(seeds_path),
        # What published pages show (card, report.html): no path of this machine, Hub ids for models.
        "seeds_file": display_path(seeds_path, run.run_dir),
        "teacher_id": hub_model_id(teacher.model) if teacher else "",
        "config_public": public_config(run.config, run.run_dir),
        "seeds": seed_count,
        "rounds": len(summary.rounds),
        "kept_tasks": len(run.tasks),
        "instances": sum(len(t.instances) for t in run.tasks),
        "rejected": len(run.rejections),
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "cost": totals.cost,
        "seconds": totals.seconds,
        "tokens_per_s": totals.tokens_per_s,
        "updated_at": summary.updated_at,
        "dedup_threshold": _section(run.config, "dedup").get("threshold"),
        "filters": _section(run.config, "filters"),
        # decoding.constrained as it ran (None for a run from before the setting)
        "decoding": summary.constrained_decoding.describe()
        if summary.constrained_decoding is not None
        else "free (the run predates decoding.constrained)",
    }


def compute_report(
    run: RunData,
    seeds: list[SeedTask],
    seeds_path: Path,
    *,
    sample: int = 10,
    verb_method: str = "auto",
    sample_seed: int = 0,
    on_novelty: Callable[[int], None] | None = None,
    on_verbs: Callable[[int], None] | None = None,
    diversity_map: bool = True,
    on_embedded: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Every figure of the report, as one JSON-ready dict."""
    from pipeline.report.diversity import diversity_figures
    from pipeline.report.verbs import analyze_verbs

    tokenizer = str(_section(run.config, "dedup").get("tokenizer") or "rouge")
    instructions = [t.instruction for t in run.tasks]
    funnel_figures = funnel(run)
    figures = {
        "overview": overview(run, seeds_path, len(seeds)),
        "funnel": funnel_figures,
        "reasons": rejection_reasons(run.rejections),
        "novelty": novelty(
            instructions, [s.instruction for s in seeds], tokenizer=tokenizer, on_done=on_novelty
        ),
        "lengths": lengths(run.tasks),
        "shares": shares(run.tasks),
        "verbs": analyze_verbs(instructions, verb_method, on_done=on_verbs),  # type: ignore[arg-type]
        "rounds": rounds(run),
        "evolution": evolution(run),
        "sample": sample_tasks(run.tasks, sample, sample_seed),
        "judge": judgment_figures(run.tasks, read_judgments(run.run_dir)),
        "student": student_figures(run.run_dir),
        "human": human_figures(run.run_dir),
        "diversity": diversity_figures(
            run.run_dir, run.tasks, seeds, verb_method=verb_method, on_embedded=on_embedded
        )
        if diversity_map
        else None,
        "notes": [*run.notes, *consistency(run, funnel_figures)],
    }
    return figures
