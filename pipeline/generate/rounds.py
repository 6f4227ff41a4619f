"""Generation rounds: Self-Instruct's bootstrap and the Alpaca recipe, resumable after any kill.

A self-instruct round: `batch_size` instruction prompts (6 seed + 2 pool tasks, 8 seeds while the
pool is empty) -> parse -> instruction filters -> ROUGE-L check against the index (so no instances
are paid for a duplicate) -> yes/no classification (temperature 0) -> instances (output-first for
classification tasks, input-first otherwise) -> instance filters -> final offer to the ROUGE-L index
in candidate order (so duplicates inside the batch count) -> kept.
An alpaca round: `batch_size` prompts of 3 seed tasks -> parse -> instruction and instance filters
-> offer to the index -> kept.

Every rejected candidate is recorded with its stage and reason codes. Each round commits as a unit
(see `pipeline.run.rundir`): append kept tasks, append rejections, replace state.json (the commit
point, with the RNG state), replace summary.json. Prompts come from the run's RNG and each request
carries a seed derived from (run seed, round, stage, index), so a redone round asks the teacher
exactly the same questions and the cache answers all of them.

Test hook: `SELFINSTRUCT_CRASH_AT=<point>[@<round>]` makes the process exit at once (`os._exit`,
like a kill) at a named point; see `CRASH_POINTS`. Tests use it to prove that resume is exact.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.jsonio import append_jsonl
from pipeline.core.yamlconfig import dump_config
from pipeline.generate.classify import Label, classification_requests, parse_label
from pipeline.generate.config import FREE_KEYS, Decoding, GenerateConfig
from pipeline.generate.parsing import (
    ParseProblem,
    parse_alpaca_reply,
    parse_instances,
    parse_instruction_list,
)
from pipeline.generate.prompts import (
    Templates,
    alpaca_prompt,
    instances_prompt,
    load_templates,
    make_request,
    request_seed,
    sample_alpaca,
    sample_self_instruct,
    self_instruct_prompt,
)
from pipeline.quality.dedup import DedupResult, RougeIndex
from pipeline.quality.filters import check_instruction, filter_instances
from pipeline.run.rundir import (
    TASK_STAGES,
    RunDir,
    RunState,
    build_summary,
    config_differences,
    file_digest,
    fingerprint_differences,
    rng_from_json,
    rng_to_json,
)
from pipeline.run.schemas import Instance, MachineTask, Rejection, SeedTask
from pipeline.run.seeds import default_seeds_path, load_seeds
from pipeline.teachers.base import Completion, Request, Teacher

CRASH_ENV = "SELFINSTRUCT_CRASH_AT"
CRASH_EXIT_CODE = 137
CRASH_POINTS = (
    "round_start",  # prompts built, nothing asked yet
    "mid_teacher",  # inside the first teacher call, after about half of its completions were cached
    "after_teacher",  # the instruction (or alpaca) replies are all cached
    "after_instances",  # every teacher call of the round is cached, nothing appended
    "torn_append",  # half a kept-task line written, then killed (a torn tail)
    "after_tasks",  # kept tasks appended, rejections not
    "after_append",  # both files appended, state.json not replaced (the round is not committed)
    "after_state",  # committed, summary.json not yet replaced
)
REPLY_CHARS = 4000
NO_PROGRESS_STOP = "no_progress"


def crash_point(name: str, round_no: int) -> None:
    """Exit the process at once if SELFINSTRUCT_CRASH_AT names this point (and round): a kill for tests."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, at = spec.partition("@")
    if point == name and (not at or int(at) == round_no):
        os._exit(CRASH_EXIT_CODE)


class Reporter:
    """Where rounds report progress; the default reports nothing (tests, --quiet)."""

    def start(self, state: RunState, config: GenerateConfig) -> None:
        """The run is about to start its first round (state as loaded)."""

    def round_start(self, round_no: int) -> None:
        """A round begins."""

    def step(self, label: str, total: int) -> None:
        """A teacher call of `total` requests begins."""

    def advance(self, count: int) -> None:
        """`count` more requests of the current step are done."""

    def round_done(self, row: dict[str, Any], state: RunState) -> None:
        """A round was committed."""


@dataclass
class Candidate:
    """A task on its way through the stages of a round."""

    key: str
    request: int
    instruction: str
    finish_reason: str | None
    prompt_ids: list[str]
    instances: list[Instance] = field(default_factory=list)
    label: Label = Label.NO


@dataclass
class RoundResult:
    tasks: list[MachineTask]
    rejections: list[Rejection]
    candidates: int
    labels: Counter[str]


@dataclass
class Generator:
    """One run's fixed inputs and mutable pool; `run_round` is deterministic given the RNG state."""

    config: GenerateConfig
    seeds: list[SeedTask]
    templates: Templates
    teacher: Teacher
    index: RougeIndex
    pool: list[MachineTask]
    rng: random.Random
    reporter: Reporter = field(default_factory=Reporter)

    @property
    def chat(self) -> bool:
        return self.config.prompt_style == "chat"

    def _ask(
        self, label: str, requests: list[Request], round_no: int, crash_midway: bool = False
    ) -> list[Completion]:
        if not requests:
            return []
        self.reporter.step(label, len(requests))
        done = 0
        half = max(1, len(requests) // 2)

        def on_done(count: int) -> None:
            nonlocal done
            done += count
            self.reporter.advance(count)
            if crash_midway and done >= half:
                crash_point("mid_teacher", round_no)

        return self.teacher.generate(requests, on_done=on_done)

    def _ask_first(
        self, label: str, stage: str, prompts: list[str], decoding: Decoding, round_no: int
    ) -> list[Completion]:
        """The round's opening batch: one seeded request per prompt, with the round's crash points."""
        cfg = self.config
        requests = [
            make_request(prompt, cfg.prompt_style, decoding, request_seed(cfg.seed, round_no, stage, i))
            for i, prompt in enumerate(prompts)
        ]
        crash_point("round_start", round_no)
        replies = self._ask(label, requests, round_no, crash_midway=True)
        crash_point("after_teacher", round_no)
        return replies

    # -- one round ---------------------------------------------------------------------------------
    def run_round(self, round_no: int) -> RoundResult:
        if self.config.method == "alpaca":
            return self._alpaca_round(round_no)
        return self._self_instruct_round(round_no)

    def _reject(
        self,
        out: list[Rejection],
        round_no: int,
        stage: str,
        reasons: list[str],
        instruction: str,
        **candidate: Any,
    ) -> None:
        out.append(
            Rejection(
                round=round_no,
                stage=stage,
                reasons=list(reasons),
                instruction=instruction,
                candidate=candidate,
            )
        )

    def _parse_problem(
        self,
        out: list[Rejection],
        round_no: int,
        key: str,
        request: int,
        problem: ParseProblem,
        finish_reason: str | None,
        prompt_ids: list[str],
    ) -> None:
        self._reject(
            out,
            round_no,
            "parse",
            list(problem.codes),
            "",
            key=key,
            request=request,
            reply=problem.text[:REPLY_CHARS],
            finish_reason=finish_reason,
            prompt_ids=prompt_ids,
        )

    def _self_instruct_round(self, round_no: int) -> RoundResult:
        cfg = self.config
        header = self.templates["instructions_clf" if cfg.classification_seeds_only else "instructions"]
        shown = [
            sample_self_instruct(
                self.rng, self.seeds, self.pool, cfg.prompt_count, cfg.num_machine_instructions
            )
            for _ in range(cfg.batch_size)
        ]
        prompts = [self_instruct_prompt(header, tasks) for tasks in shown]
        replies = self._ask_first(
            "instructions", "instructions", prompts, cfg.decoding.instructions, round_no
        )

        rejections: list[Rejection] = []
        candidates: list[Candidate] = []
        for i, completion in enumerate(replies):
            text, finish = completion.texts[0], completion.finish_reasons[0]
            ids = [t.id for t in shown[i]]
            parsed = parse_instruction_list(text, chat=self.chat)
            for j, problem in enumerate(parsed.problems):
                self._parse_problem(
                    rejections, round_no, f"r{round_no:04d}-q{i:03d}-p{j:02d}", i, problem, finish, ids
                )
            last = len(parsed.instructions) - 1
            for j, instruction in enumerate(parsed.instructions):
                # Only the last item of a reply cut by the length limit may itself be cut: the items
                # before it ended at a newline and are whole, so they carry no `length` finish.
                item_finish = None if finish == "length" and j < last else finish
                candidates.append(
                    Candidate(f"r{round_no:04d}-q{i:03d}-c{j:02d}", i, instruction, item_finish, ids)
                )
        total = len(candidates)

        survivors = self._instruction_filters(candidates, rejections, round_no)
        # Check novelty before paying for classification and instances; the final offer decides.
        novel = []
        for cand in survivors:
            verdict = self.index.check(cand.instruction)
            if verdict.kept:
                novel.append(cand)
            else:
                self._dedup_reject(rejections, round_no, cand, verdict)

        labels: Counter[str] = Counter()
        clf_replies = self._ask(
            "classify",
            classification_requests(
                [c.instruction for c in novel],
                self.templates["classify"],
                cfg.prompt_style,
                cfg.decoding.classify,
                cfg.seed,
                round_no,
            ),
            round_no,
        )
        for cand, completion in zip(novel, clf_replies, strict=True):
            cand.label = parse_label(completion.texts[0])
            labels[cand.label.value] += 1

        max_instances = cfg.filters.max_instances
        inst_requests = []
        for k, cand in enumerate(novel):
            clf = cand.label.is_classification
            inst_requests.append(
                make_request(
                    instances_prompt(
                        self.templates["instances_clf" if clf else "instances_gen"], cand.instruction
                    ),
                    cfg.prompt_style,
                    cfg.decoding.instances,
                    request_seed(cfg.seed, round_no, "instances", k),
                    max_tokens=cfg.decoding.instances_clf_max_tokens
                    if clf
                    else cfg.decoding.instances.max_tokens,
                    stop=[*cfg.decoding.instances.stop, f"Example {max_instances + 1}"],
                )
            )
        inst_replies = self._ask("instances", inst_requests, round_no)
        crash_point("after_instances", round_no)

        with_instances = []
        for cand, completion in zip(novel, inst_replies, strict=True):
            text, finish = completion.texts[0], completion.finish_reasons[0]
            parsed = parse_instances(text, finish, cand.label.is_classification)
            if self._keep_instances(
                cand,
                parsed.instances,
                parsed.problems,
                rejections,
                round_no,
                reply=text[:REPLY_CHARS],
                finish_reason=finish,
            ):
                with_instances.append(cand)

        tasks = self._final_offer(with_instances, rejections, round_no)
        return RoundResult(tasks, rejections, total, labels)

    def _alpaca_round(self, round_no: int) -> RoundResult:
        cfg = self.config
        shown = [sample_alpaca(self.rng, self.seeds, cfg.prompt_count) for _ in range(cfg.batch_size)]
        prompts = [alpaca_prompt(self.templates["alpaca"], tasks) for tasks in shown]
        replies = self._ask_first("tasks", "alpaca", prompts, cfg.decoding.alpaca, round_no)
        crash_point("after_instances", round_no)

        rejections: list[Rejection] = []
        candidates: list[Candidate] = []
        for i, completion in enumerate(replies):
            text, finish = completion.texts[0], completion.finish_reasons[0]
            ids = [t.id for t in shown[i]]
            parsed = parse_alpaca_reply(text, finish, cfg.prompt_count, chat=self.chat)
            for j, problem in enumerate(parsed.problems):
                self._parse_problem(
                    rejections, round_no, f"r{round_no:04d}-q{i:03d}-p{j:02d}", i, problem, finish, ids
                )
            for j, item in enumerate(parsed.items):
                cand = Candidate(
                    f"r{round_no:04d}-q{i:03d}-c{j:02d}",
                    i,
                    item.instruction,
                    "length" if item.truncated else None,
                    ids,
                    instances=[Instance(input=item.input, output=item.output)],
                )
                candidates.append(cand)
        total = len(candidates)
        survivors = self._instruction_filters(candidates, rejections, round_no)
        with_instances = [
            cand for cand in survivors if self._keep_instances(cand, cand.instances, [], rejections, round_no)
        ]
        tasks = self._final_offer(with_instances, rejections, round_no)
        return RoundResult(tasks, rejections, total, Counter())

    # -- stages shared by both methods ---------------------------------------------------------------
    def _instruction_filters(
        self, candidates: list[Candidate], rejections: list[Rejection], round_no: int
    ) -> list[Candidate]:
        out = []
        for cand in candidates:
            reasons = check_instruction(cand.instruction, cand.finish_reason, self.config.filters)
            if reasons:
                self._reject(
                    rejections,
                    round_no,
                    "instruction",
                    reasons,
                    cand.instruction,
                    key=cand.key,
                    request=cand.request,
                    finish_reason=cand.finish_reason,
                    prompt_ids=cand.prompt_ids,
                )
            else:
                out.append(cand)
        return out

    def _keep_instances(
        self,
        cand: Candidate,
        instances: list[Instance],
        problems: list[ParseProblem],
        rejections: list[Rejection],
        round_no: int,
        **details: Any,
    ) -> bool:
        """Filter a candidate's instances; record what is dropped; False when none is left."""
        kept, dropped = filter_instances(instances, self.config.filters, instruction=cand.instruction)
        if not kept:
            reasons = ["no_valid_instances"]
            for code in [c for p in problems for c in p.codes] + [c for _, codes in dropped for c in codes]:
                if code not in reasons:
                    reasons.append(code)
            self._reject(
                rejections,
                round_no,
                "instance",
                reasons,
                cand.instruction,
                key=cand.key,
                request=cand.request,
                is_classification=cand.label.is_classification,
                prompt_ids=cand.prompt_ids,
                instances=[i.model_dump() for i in instances],
                **details,
            )
            return False
        # The task survives; each instance it lost is still recorded, so nothing vanishes silently.
        for m, problem in enumerate(problems):
            self._reject(
                rejections,
                round_no,
                "instance_dropped",
                list(problem.codes),
                cand.instruction,
                key=f"{cand.key}-x{m:02d}",
                request=cand.request,
                text=problem.text[:REPLY_CHARS],
            )
        for m, (instance, codes) in enumerate(dropped):
            self._reject(
                rejections,
                round_no,
                "instance_dropped",
                list(codes),
                cand.instruction,
                key=f"{cand.key}-i{m:02d}",
                request=cand.request,
                instance=instance.model_dump(),
            )
        cand.instances = kept
        return True

    def _dedup_reject(
        self, rejections: list[Rejection], round_no: int, cand: Candidate, verdict: DedupResult
    ) -> None:
        top = dict(list(verdict.most_similar.items())[:3])
        self._reject(
            rejections,
            round_no,
            "dedup",
            ["rouge_l_duplicate"],
            cand.instruction,
            key=cand.key,
            request=cand.request,
            max_score=verdict.max_score,
            most_similar=top,
            prompt_ids=cand.prompt_ids,
        )

    def _final_offer(
        self, cands: list[Candidate], rejections: list[Rejection], round_no: int
    ) -> list[MachineTask]:
        verdicts = self.index.offer_many([c.instruction for c in cands])
        tasks = []
        now = time.time()
        for cand, verdict in zip(cands, verdicts, strict=True):
            if not verdict.kept:
                self._dedup_reject(rejections, round_no, cand, verdict)
                continue
            tasks.append(
                MachineTask(
                    id=f"r{round_no:04d}-{len(tasks):04d}",
                    instruction=cand.instruction,
                    instances=cand.instances,
                    is_classification=cand.label.is_classification,
                    round=round_no,
                    method=self.config.method,
                    teacher=self.teacher.identity,
                    prompt_ids=cand.prompt_ids,
                    most_similar=verdict.most_similar,
                    avg_similarity=verdict.avg_similarity,
                    created_at=now,
                )
            )
        return tasks


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    summary: dict[str, Any]
    rounds_run: int
    stopped: str | None = None  # NO_PROGRESS_STOP when --until gave up
    resumed_round: int | None = None  # a round that had been appended but not committed, redone
    usage: dict[str, Any] = field(default_factory=dict)


def resolve_seeds_path(config: GenerateConfig) -> Path:
    return Path(config.seeds) if config.seeds else default_seeds_path()


def _load_seeds(config: GenerateConfig) -> tuple[Path, list[SeedTask]]:
    path = resolve_seeds_path(config)
    if not path.exists():
        raise UserError(f"seeds: no such file: {path}")
    seeds = load_seeds(path)
    if config.method == "self-instruct" and config.classification_seeds_only:
        seeds = [s for s in seeds if s.is_classification]
    need = config.prompt_count
    if len(seeds) < need:
        which = "classification seed tasks" if config.classification_seeds_only else "seed tasks"
        raise UserError(
            f"{path}: {len(seeds)} {which}, but every prompt shows {need}; add seeds or lower "
            "num_prompt_instructions"
        )
    return path, seeds


def _rejection_row(rejections: list[Rejection]) -> tuple[dict[str, int], dict[str, int]]:
    reasons: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for rej in rejections:
        reasons.update(rej.reasons)
        stages[rej.stage] += 1
    return dict(reasons.most_common()), dict(stages.most_common())


def _commit(
    run: RunDir, result: RoundResult, state: RunState, present: dict[str, set[str]], round_no: int
) -> None:
    """Append what is not on disk yet, then replace state.json: the round's commit point."""
    tasks = [t for t in result.tasks if t.id not in present["tasks"]]
    if os.environ.get(CRASH_ENV, "").partition("@")[0] == "torn_append" and tasks:
        with run.tasks_path.open("a", encoding="utf-8") as handle:
            line = tasks[0].model_dump_json()
            handle.write(line[: len(line) // 2])
        crash_point("torn_append", round_no)
    append_jsonl(run.tasks_path, tasks)
    crash_point("after_tasks", round_no)
    append_jsonl(
        run.rejected_path, [r for r in result.rejections if r.candidate.get("key") not in present["rejected"]]
    )
    crash_point("after_append", round_no)
    run.write_state(state)
    crash_point("after_state", round_no)


def _reconcile_pending(
    run: RunDir, state: RunState, result: RoundResult, pending: dict[str, dict[str, str]]
) -> dict[str, set[str]]:
    """Records of an uncommitted round already on disk: skip them if the redo made the same, else drop them."""
    if not pending["tasks"] and not pending["rejected"]:
        return {"tasks": set(), "rejected": set()}
    redo_tasks = {t.id: t.instruction for t in result.tasks}
    redo_rej = {str(r.candidate.get("key")): r.instruction for r in result.rejections}
    same = all(redo_tasks.get(i) == text for i, text in pending["tasks"].items()) and all(
        redo_rej.get(k) == text for k, text in pending["rejected"].items()
    )
    if same:
        return {"tasks": set(pending["tasks"]), "rejected": set(pending["rejected"])}
    run.drop_uncommitted(state.rounds_done)
    return {"tasks": set(), "rejected": set()}


def prepare_run(
    config: GenerateConfig, run: RunDir, *, force: bool = False
) -> tuple[RunState, Path, list[SeedTask], Templates, list[MachineTask], dict[str, dict[str, str]]]:
    """Check the run directory against the config and load what a resumed run continues from."""
    seeds_path, seeds = _load_seeds(config)
    templates = load_templates(config.templates)
    fingerprints = {"seeds": file_digest(seeds_path), "templates": templates.digests()}
    new_config = config.model_dump(mode="json")
    state = run.read_state()
    stored = run.read_config()
    if stored is not None and (state is not None or run.tasks_path.exists()):
        diffs = config_differences(stored, new_config, FREE_KEYS)
        if state is not None and state.fingerprints:
            diffs += fingerprint_differences(state.fingerprints, fingerprints)
        if diffs and not force:
            shown = "\n  ".join(diffs)
            raise UserError(
                f"{run.path} holds a run made with a different configuration:\n  {shown}\n"
                "use another --run-dir, put the old settings back, or pass --force to continue this run "
                "with the new ones"
            )
    run.write_config(dump_config(config))
    if state is None:
        state = RunState(rng_state=rng_to_json(random.Random(config.seed)))
    state.fingerprints = fingerprints
    run.repair()
    on_disk = run.read_tasks()
    committed = [t for t in on_disk if t.round <= state.rounds_done]
    pending = {
        "tasks": {t.id: t.instruction for t in on_disk if t.round > state.rounds_done},
        "rejected": {
            str(r.candidate.get("key")): r.instruction
            for r in run.read_rejections()
            if r.round > state.rounds_done
        },
    }
    if any(t.round > state.rounds_done + 1 for t in on_disk):
        # Only the round after the last commit can be half-written; anything later is not ours to trust.
        run.drop_uncommitted(state.rounds_done)
        pending = {"tasks": {}, "rejected": {}}
    return state, seeds_path, seeds, templates, committed, pending


def run_generation(
    config: GenerateConfig,
    run_dir: str | Path,
    *,
    force: bool = False,
    teacher: Teacher | None = None,
    reporter: Reporter | None = None,
    on_warning: Callable[[str], None] | None = None,
    after_commit: Callable[[RunState], None] | None = None,
) -> RunOutcome:
    """Run `config.rounds` more rounds (or until `config.until` kept tasks) in `run_dir`, committing each.

    With `teacher` given (an engine shared by tests), it is wrapped with the run's cache when
    `config.teacher.cache` and left open; otherwise the configured teacher is built and closed here.
    `after_commit(state)` runs after each committed round (the judge's hook, `pipeline.judge.hook`).
    """
    run = RunDir(run_dir)
    reporter = reporter or Reporter()
    with run.locked():
        state, seeds_path, seeds, templates, committed, pending = prepare_run(config, run, force=force)
        own_teacher = teacher is None
        if teacher is None:
            from pipeline.teachers import make_teacher

            teacher = make_teacher(config.teacher, cache_dir=run.cache_dir)
        elif config.teacher.cache:
            from pipeline.teachers.cache import CachedTeacher

            teacher = CachedTeacher(teacher, run.cache_dir)
        start_usage = teacher.usage.copy()
        index = RougeIndex(config.dedup)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            index.add_many([s.instruction for s in seeds])
            index.add_many([t.instruction for t in committed])
            gen = Generator(
                config,
                seeds,
                templates,
                teacher,
                index,
                list(committed),
                rng_from_json(state.rng_state),
                reporter,
            )
            outcome = RunOutcome(summary={}, rounds_run=0)
            if pending["tasks"] or pending["rejected"]:
                outcome.resumed_round = state.rounds_done + 1
            reporter.start(state, config)
            try:
                outcome.stopped, outcome.rounds_run = _loop(gen, run, state, pending, config, after_commit)
            finally:
                if own_teacher:
                    teacher.close()
        if on_warning is not None:
            seen = set()
            for w in caught:
                text = str(w.message)
                if text not in seen:
                    seen.add(text)
                    on_warning(text)
        summary = build_summary(
            state,
            method=config.method,
            seeds_path=str(seeds_path),
            seeds_count=len(seeds),
            teacher=teacher.identity,
        )
        run.write_summary(summary)
        outcome.summary = summary
        outcome.usage = teacher.usage.since(start_usage).as_dict()
        return outcome


def _loop(
    gen: Generator,
    run: RunDir,
    state: RunState,
    pending: dict[str, dict[str, str]],
    config: GenerateConfig,
    after_commit: Callable[[RunState], None] | None = None,
) -> tuple[str | None, int]:
    """Run rounds until the run-length rule says stop; return (why it stopped early or None, rounds run)."""
    ran = stale = 0
    while True:
        if config.until is not None:
            if state.kept_total >= config.until:
                return None, ran
            if stale >= config.max_rounds_without_progress:
                return NO_PROGRESS_STOP, ran
        elif ran >= config.rounds:
            return None, ran
        round_no = state.rounds_done + 1
        gen.reporter.round_start(round_no)
        before = gen.teacher.usage.copy()
        started = time.perf_counter()
        result = gen.run_round(round_no)
        usage = gen.teacher.usage.since(before)
        present = _reconcile_pending(run, state, result, pending)
        pending = {"tasks": {}, "rejected": {}}
        rejected, by_stage = _rejection_row(result.rejections)
        row: dict[str, Any] = {"round": round_no, **usage.as_dict()}
        row.update(
            candidates=result.candidates,
            kept=len(result.tasks),
            rejected=rejected,
            rejected_by_stage=by_stage,
            classification=dict(result.labels),
            wall_s=round(time.perf_counter() - started, 3),
        )
        state.rounds.append(row)
        state.rounds_done = round_no
        state.kept_total += len(result.tasks)
        stale = 0 if result.tasks else stale + 1
        state.rng_state = rng_to_json(gen.rng)
        state.teacher = gen.teacher.identity
        _commit(run, result, state, present, round_no)
        gen.pool.extend(result.tasks)
        ran += 1
        run.write_summary(
            build_summary(
                state,
                method=config.method,
                seeds_path=str(resolve_seeds_path(config)),
                seeds_count=len(gen.seeds),
                teacher=gen.teacher.identity,
            )
        )
        gen.reporter.round_done(row, state)
        if after_commit is not None:
            after_commit(state)


def task_rejection_count(row: dict[str, Any]) -> int:
    """Whole candidates rejected in a round (parse problems and dropped instances are not candidates)."""
    return sum(int(row.get("rejected_by_stage", {}).get(stage, 0)) for stage in TASK_STAGES)
