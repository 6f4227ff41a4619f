"""The figures of a run, computed from its files: what the pipeline kept, what it threw away and why.

Everything is read from the run directory's contract files (machine_tasks.jsonl, rejected.jsonl,
summary.json, config.yaml) and returned as plain JSON-ready dicts, so that the HTML report, the
dataset card and `report --json` show the same numbers, and a test can check each one against the
files. Counts of kept and rejected records come from the JSONL files themselves (the record of
truth); requests, candidates, tokens and timings exist only in summary.json and come from there.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel

from pipeline.core.errors import UserError
from pipeline.core.jsonio import load_models
from pipeline.run.judgments import judgment_figures, read_judgments
from pipeline.run.rundir import TASK_STAGES
from pipeline.run.schemas import MachineTask, Rejection, SeedTask

M = TypeVar("M", bound=BaseModel)

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
    """A run directory's files, parsed and validated."""

    run_dir: Path
    config: dict[str, Any]
    config_text: str
    summary: dict[str, Any]
    tasks: list[MachineTask]
    rejections: list[Rejection]
    notes: list[str] = field(default_factory=list)
    rounds_done: int | None = None


# ---------------------------------------------------------------------------------------------- I/O


def load_records(path: Path, model: type[M]) -> list[M]:
    """Validate every line of one of our append-only files; a torn last line (a kill) is skipped."""
    return [record for _, record in load_models(path, model, skip_torn_tail=True)]


def load_run(run_dir: str | Path) -> RunData:
    """Read a run directory; missing required files are a `UserError` naming what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UserError(
            f"{run_dir}: not a directory; expected a run directory made by `selfinstruct generate`"
        )
    if not (run_dir / "summary.json").is_file():
        raise UserError(
            f"{run_dir}: not a run directory with results: missing summary.json "
            "(run `selfinstruct generate --run-dir` first)"
        )
    notes: list[str] = []
    summary_path = run_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{summary_path}, line {exc.lineno}: bad JSON: {exc.msg}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{summary_path}, line 1: expected a JSON object")
    config: dict[str, Any] = {}
    config_text = ""
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        config_text = config_path.read_text(encoding="utf-8")
        try:
            loaded = yaml.safe_load(config_text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"{config_path}{where}: bad YAML: {exc.problem or exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{config_path}, line 1: expected a mapping of settings")
        config = loaded or {}
    else:
        notes.append("config.yaml is missing: settings are not shown")
    tasks_path = run_dir / "machine_tasks.jsonl"
    if tasks_path.is_file():
        tasks = load_records(tasks_path, MachineTask)
    elif summary.get("kept_total") == 0:
        # The writer appends only kept tasks, so a run that kept none has no file: report its rejections.
        tasks = []
        notes.append("the run has kept no task yet, so machine_tasks.jsonl does not exist")
    else:
        raise UserError(
            f"{run_dir}: missing machine_tasks.jsonl although summary.json counts "
            f"{summary.get('kept_total', 'some')} kept tasks (run `selfinstruct generate --run-dir` first)"
        )
    rejected_path = run_dir / "rejected.jsonl"
    if rejected_path.is_file():
        rejections = load_records(rejected_path, Rejection)
    else:
        rejections = []
        notes.append("rejected.jsonl is missing: no rejections are shown")
    rounds_done = committed_rounds(run_dir / "state.json")
    if rounds_done is not None:
        pending = sum(t.round > rounds_done for t in tasks) + sum(r.round > rounds_done for r in rejections)
        if pending:
            notes.append(
                f"{pending} record(s) of round {rounds_done + 1}, not committed (the run was stopped during it), "
                "are left out; rerun `selfinstruct generate` to finish that round"
            )
            tasks = [t for t in tasks if t.round <= rounds_done]
            rejections = [r for r in rejections if r.round <= rounds_done]
    return RunData(run_dir, config, config_text, summary, tasks, rejections, notes, rounds_done)


def committed_rounds(state_path: Path) -> int | None:
    """Rounds recorded as done in state.json (the run's commit point), or None without a usable one."""
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    done = state.get("rounds_done") if isinstance(state, dict) else None
    return done if isinstance(done, int) and not isinstance(done, bool) else None


def seeds_path_for(run: RunData, override: str | Path | None = None) -> Path:
    """Which seeds the run used: --seeds, else config.yaml's `seeds` (null: the project default)."""
    from pipeline.run.seeds import default_seeds_path

    if override is not None:
        return Path(override)
    configured = run.config.get("seeds")
    if configured is None and "seeds" not in run.config:
        configured = (run.summary.get("seeds") or {}).get("path")
    if not configured:
        return default_seeds_path()
    path = Path(configured)
    if not path.is_absolute() and not path.exists() and (run.run_dir / path).exists():
        path = run.run_dir / path
    return path


def load_run_seeds(run: RunData, override: str | Path | None = None) -> tuple[Path, list[SeedTask]]:
    from pipeline.run.seeds import load_seeds

    path = seeds_path_for(run, override)
    if not path.is_file():
        raise UserError(f"{path}: seeds file of run {run.run_dir} not found; pass it with --seeds PATH")
    return path, load_seeds(path)


# ------------------------------------------------------------------------------------- the figures


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


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
    totals = run.summary.get("totals") or {}
    candidates = int(_num(totals.get("candidates")))
    by_stage = stage_counts(run.rejections)
    steps: list[dict[str, Any]] = [
        {"step": "teacher requests (all kinds)", "stage": None, "count": int(_num(totals.get("requests")))},
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


def rounds(run: RunData) -> dict[str, Any]:
    """Per round: the teacher's work (tokens, cost, time, tokens/s) from summary.json, and the files'
    kept and rejected counts beside summary.json's own, so that a mismatch shows."""
    kept_in_files = Counter(t.round for t in run.tasks)
    rejected_in_files = Counter(r.round for r in run.rejections)
    rows = []
    for entry in run.summary.get("rounds") or []:
        if not isinstance(entry, dict) or "round" not in entry:
            continue
        number = int(entry["round"])
        row: dict[str, Any] = {"round": number}
        for key in ROUND_FIELDS:
            value = entry.get(key)
            row[key] = value if isinstance(value, int | float) or value is None else None
        rejected = entry.get("rejected") or {}
        row["rejected_reasons"] = dict(rejected) if isinstance(rejected, dict) else {}
        row["kept_in_files"] = kept_in_files.get(number, 0)
        row["rejected_in_files"] = rejected_in_files.get(number, 0)
        rows.append(row)
    rows.sort(key=lambda r: r["round"])
    totals_in = run.summary.get("totals") or {}
    totals = {key: totals_in.get(key) for key in ROUND_FIELDS}
    totals["kept_in_files"] = len(run.tasks)
    totals["rejected_in_files"] = len(run.rejections)
    return {"rows": rows, "totals": totals, "count": len(rows)}


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
    totals = run.summary.get("totals") or {}
    kept_total = run.summary.get("kept_total", totals.get("kept"))
    if isinstance(kept_total, int) and kept_total != len(run.tasks):
        notes.append(
            f"summary.json counts {kept_total} kept tasks; machine_tasks.jsonl holds {len(run.tasks)}"
        )
    by_stage = totals.get("rejected_by_stage")
    if isinstance(by_stage, dict):
        files = funnel_figures["rejected_by_stage"]
        for stage in sorted(set(by_stage) | set(files)):
            if int(_num(by_stage.get(stage))) != files.get(stage, 0):
                notes.append(
                    f"summary.json counts {int(_num(by_stage.get(stage)))} rejections at stage {stage!r}; "
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
    teacher = summary.get("teacher") or {}
    if not teacher and run.tasks:
        teacher = run.tasks[0].teacher.model_dump()
    method = summary.get("method") or (run.tasks[0].method if run.tasks else "")
    totals = summary.get("totals") or {}
    return {
        "run": run.run_dir.name,
        "run_dir": str(run.run_dir),
        "method": method,
        "teacher": {k: teacher.get(k, "") for k in ("backend", "model", "fingerprint")},
        "seeds_path": str(seeds_path),
        "seeds": seed_count,
        "rounds": len(summary.get("rounds") or []),
        "kept_tasks": len(run.tasks),
        "instances": sum(len(t.instances) for t in run.tasks),
        "rejected": len(run.rejections),
        "prompt_tokens": totals.get("prompt_tokens"),
        "completion_tokens": totals.get("completion_tokens"),
        "cost": totals.get("cost"),
        "seconds": totals.get("seconds"),
        "tokens_per_s": totals.get("tokens_per_s"),
        "updated_at": summary.get("updated_at"),
        "dedup_threshold": _section(run.config, "dedup").get("threshold"),
        "filters": _section(run.config, "filters"),
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
) -> dict[str, Any]:
    """Every figure of the report, as one JSON-ready dict."""
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
        "sample": sample_tasks(run.tasks, sample, sample_seed),
        "judge": judgment_figures(run.tasks, read_judgments(run.run_dir)),
        "notes": [*run.notes, *consistency(run, funnel_figures)],
    }
    return figures
