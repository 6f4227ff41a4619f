"""The run protocol: rounds committed one by one, resumable after any kill, bounded in rounds, kept tasks
or time. Recipes (`pipeline.generate.recipes`) decide what a round keeps; this module decides when
rounds run and how they reach the disk.

Each round commits as a unit (`pipeline.generate.rounds`, which also runs the rounds, overlapping
them with `overlap_rounds`). Prompts come from
the run's RNG and each request carries a seed derived from (run seed, round, stage, place in the
round), so a redone round asks the teacher exactly the same questions and the cache answers all of
them. A run stops at the first of its bounds: `rounds` more rounds, `until` kept tasks, or its
`time_budget` (the first round of an invocation always runs; a later one starts only if the budget
still has room for about half a round, so the run ends near the budget on average, never mid-round).

Crash points (test-only, injected as `crash_hook`): the round's own (`pipeline.generate.driver`),
then the commit's (`pipeline.generate.rounds`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.warncapture import PipelineWarning, capture_warnings
from pipeline.core.yamlconfig import dump_config
from pipeline.generate.config import FREE_KEYS, GenerateConfig
from pipeline.generate.constrained import resolve_constrained
from pipeline.generate.driver import CrashHook, no_crash
from pipeline.generate.progress import ProgressListener
from pipeline.generate.prompts import Templates, load_templates
from pipeline.generate.recipe import RunContext
from pipeline.generate.recipes import recipe_class
from pipeline.generate.rounds import Rounds, write_summary
from pipeline.quality.dedup import RougeIndex
from pipeline.run.rundir import (
    RunDir,
    RunState,
    config_differences,
    file_digest,
    fingerprint_differences,
    rng_from_json,
    rng_to_json,
)
from pipeline.run.schemas import MachineTask, SeedTask, TeacherIdentity
from pipeline.run.seeds import load_seeds, resolve_seeds_path
from pipeline.run.summary import RunSummary
from pipeline.teachers.base import Teacher
from pipeline.teachers.cache import CachedTeacher, CompletionCache
from pipeline.teachers.engine import context_length
from pipeline.teachers.reach import check_reachable
from pipeline.teachers.runtime import ENGINE_LOG, EngineLog, teacher_identity

CRASH_POINTS = (
    "round_start",
    "mid_teacher",
    "after_teacher",
    "after_instances",
    "before_append",
    "after_tasks",
    "after_append",
    "after_state",
)
NO_PROGRESS_STOP = "no_progress"
TIME_BUDGET_STOP = "time_budget"


@dataclass
class RunOutcome:
    summary: RunSummary | None
    rounds_run: int
    stopped: str | None = None  # NO_PROGRESS_STOP when --until gave up, TIME_BUDGET_STOP when time ran out
    resumed_round: int | None = None  # a round that had been appended but not committed, redone
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunLength:
    """When to stop: at `until` kept tasks (which replaces `rounds`) or after `rounds` more rounds, when
    the time budget is spent, or after `max_rounds_without_progress` fruitless rounds under `until`,
    whichever comes first; after one round when no bound is set."""

    config: GenerateConfig
    started: float
    clock: Callable[[], float] = time.monotonic
    ran: int = 0
    stale: int = 0
    last_round_s: float = 0.0

    def round_done(self, kept: int, seconds: float) -> None:
        self.ran += 1
        self.stale = 0 if kept else self.stale + 1
        self.last_round_s = seconds

    def predicts_stop(self, kept: int, kept_total: int, round_s: float) -> bool:
        """Whether `stop` would end the run after the round now running, were it to end now keeping
        `kept` (the run then at `kept_total`): the next round is not asked early for nothing."""
        probe = replace(self)
        probe.round_done(kept, round_s)
        return probe.stop(kept_total)[0]

    def stop(self, kept_total: int) -> tuple[bool, str | None]:
        """(stop now?, why, when it is not simply the target reached)."""
        cfg = self.config
        if cfg.until is not None and kept_total >= cfg.until:
            return True, None
        if cfg.until is None and cfg.rounds is not None and self.ran >= cfg.rounds:
            return True, None
        if cfg.until is not None and self.stale >= cfg.max_rounds_without_progress:
            return True, NO_PROGRESS_STOP
        if cfg.time_budget is not None and self.ran:
            left = cfg.time_budget - (self.clock() - self.started)
            if left <= self.last_round_s / 2:
                return True, TIME_BUDGET_STOP
        if cfg.rounds is None and cfg.until is None and cfg.time_budget is None and self.ran:
            return True, None
        return False, None


def overlaps(config: GenerateConfig, judged: bool) -> bool:
    """Whether this run's rounds overlap (`overlap_rounds`). "auto" means with the in-process engine on
    a GPU, where the batch slots a guess fills would otherwise sit idle; not on a CPU, where a step costs
    about as much more as the sequences it adds and overlapping measured no faster (`bench/generate.py`),
    and not with HTTP servers, whose time may be shared or paid for. Never while a judge scores each
    round as it commits: it asks the same teacher between rounds."""
    if judged or config.overlap_rounds == "off":
        return False
    if config.overlap_rounds == "on":
        return True
    from pipeline.teachers.engine import has_cuda

    return config.teacher.backend == "vllm" and has_cuda()


def seed_word_limit(config: GenerateConfig) -> int | None:
    """Most words a seed instruction may have and still fit in one instruction prompt with its reply.

    Words bound tokens from below (every word is at least one token), so an instruction over this can
    never fit. The context is `teacher.engine.max_model_len`, else the model's own (its config.json),
    else 8192 (the bundled model's); a server's context is not known here unless that field is set.
    """
    engine = config.teacher.engine
    if config.teacher.backend != "vllm" and engine.max_model_len is None:
        return None
    local = config.teacher.model if Path(config.teacher.model).is_dir() else None
    reply = config.decoding.alpaca if config.method == "alpaca" else config.decoding.instructions
    return max(0, context_length(local, engine.max_model_len) - reply.max_tokens)


def load_run_seeds(
    config: GenerateConfig, path: str | Path | None = None, warnings: list[str] | None = None
) -> tuple[Path, list[SeedTask]]:
    """The run's seeds (or `path`'s), held to every rule a run needs: one rule set for `generate` and
    `seeds validate`, so that a file the validator passes is one a run takes."""
    path = resolve_seeds_path(path if path is not None else config.seeds)
    if not path.exists():
        raise UserError(f"seeds: no such file: {path}")
    seeds = load_seeds(path, warnings, max_words=seed_word_limit(config))
    shown = seeds
    if config.method == "self-instruct" and config.classification_seeds_only:
        shown = [s for s in seeds if s.is_classification]
    need = config.prompt_count
    if len(shown) < need:
        which = "classification seed tasks" if config.classification_seeds_only else "seed tasks"
        raise UserError(
            f"{path}: {len(shown)} {which}, but every prompt shows {need}; add seeds or lower "
            "num_prompt_instructions"
        )
    return path, shown


@dataclass
class RunInputs:
    """What a run reads besides its directory, loaded and checked before anything is written."""

    seeds_path: Path
    seeds: list[SeedTask]
    templates: Templates


def load_inputs(config: GenerateConfig) -> RunInputs:
    """The seeds and templates, validated: a bad one fails here, before the run directory is touched."""
    seeds_path, seeds = load_run_seeds(config)
    recipe_class(config.method).check(config, seeds)  # before any request: a clear refusal, fast
    return RunInputs(seeds_path, seeds, load_templates(config.templates))


def _differences(stored: dict[str, Any], config: GenerateConfig) -> list[str]:
    """Result-changing keys on which a stored config and `config` differ (new settings at their defaults
    do not count: an older run resumes after an upgrade)."""
    defaults = GenerateConfig().model_dump(mode="json")
    return config_differences(stored, config.model_dump(mode="json"), FREE_KEYS, defaults)


def resume_differences(
    config: GenerateConfig,
    run: RunDir,
    fingerprints: dict[str, Any],
    teacher: TeacherIdentity | None,
) -> list[str]:
    """What differs between a run's committed rounds and `config` (its inputs, its teacher): the keys
    that make continuing it need `--force`. Empty for a run without a committed round."""
    state = run.read_state()
    stored = run.read_config()
    if stored is None or state is None or state.rounds_done == 0:
        return []
    diffs = _differences(stored, config)
    if state.fingerprints:
        diffs += fingerprint_differences(state.fingerprints, fingerprints)
    if state.teacher is not None and teacher is not None:
        diffs += [d for d in state.teacher.differences(teacher) if d not in diffs]
    return diffs


def prepare_run(
    config: GenerateConfig,
    run: RunDir,
    *,
    force: bool = False,
    teacher: TeacherIdentity | None = None,
    inputs: RunInputs | None = None,
) -> tuple[RunState, Path, list[SeedTask], Templates, list[MachineTask], dict[str, dict[str, str]]]:
    """Check the run directory against the config (and the teacher that will answer, whose dtype
    the config alone does not fix) and load what a resumed run continues from.

    Only a committed round binds a run directory to its configuration: after a start that failed
    (an engine that did not come up, a server that did not answer) or a first round that was cut
    short, a new configuration starts the run afresh, without `--force`.
    """
    inputs = inputs or load_inputs(config)
    seeds_path, seeds, templates = inputs.seeds_path, inputs.seeds, inputs.templates
    fingerprints = {"seeds": file_digest(seeds_path), "templates": templates.digests()}
    state = run.read_state()
    diffs = resume_differences(config, run, fingerprints, teacher)
    if diffs and not force:
        shown = "\n  ".join(diffs)
        raise UserError(
            f"{run.path} holds a run made with a different configuration:\n  {shown}\n"
            "use another --run-dir, put the old settings back, or pass --force to continue this run "
            "with the new ones"
        )
    stored = run.read_config()
    if (state is None or state.rounds_done == 0) and stored is not None and _differences(stored, config):
        # Nothing was committed under the old settings: forget their half-round and decisions.
        run.drop_uncommitted(0)
        state = None
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


def _open_teacher(
    config: GenerateConfig, run: RunDir, teacher: Teacher | None, verbose: bool
) -> tuple[Teacher, bool]:
    """The configured teacher (ours to close), or the given one wrapped with the run's cache (not ours).

    vLLM's own log lines go to `logs/engine.log` in the run, and also to the terminal when `verbose`.
    """
    if teacher is None:
        from pipeline.teachers import make_teacher

        log = EngineLog(run.path / ENGINE_LOG, verbose=verbose)
        return make_teacher(config.teacher, cache_dir=run.cache_dir, log=log), True
    if config.teacher.cache:
        return CachedTeacher(teacher, run.cache_dir), False
    return teacher, False


def _cache_of(teacher: Teacher) -> CompletionCache | None:
    """The run's request cache, when the teacher answers through one."""
    return teacher.cache if isinstance(teacher, CachedTeacher) else None


def _context(
    config: GenerateConfig,
    state: RunState,
    seeds: list[SeedTask],
    templates: Templates,
    committed: list[MachineTask],
    teacher: Teacher,
    constrained: bool,
    run_path: Path,
) -> RunContext:
    """What the rounds share: the ROUGE-L index over seeds and committed tasks (and, with
    `dedup.semantic_duplicate`, the embedding index over them), the pool, the saved RNG, and whether
    replies are held to their formats."""
    index = RougeIndex(config.dedup)
    index.add_many([s.instruction for s in seeds])
    index.add_many([t.instruction for t in committed])
    semantic = None
    if config.dedup.semantic_duplicate:
        from pipeline.curate.semantic import SemanticFilter

        semantic = SemanticFilter.for_run(run_path, config.embedder, config.dedup.semantic_threshold)
        semantic.add_texts([s.id for s in seeds], [s.instruction for s in seeds])
        semantic.add_texts([t.id for t in committed], [t.instruction for t in committed])
    return RunContext(
        config,
        seeds,
        templates,
        index,
        list(committed),
        rng_from_json(state.rng_state),
        teacher.identity,
        constrained=constrained,
        semantic=semantic,
    )


def run_generation(
    config: GenerateConfig,
    run_dir: str | Path,
    *,
    force: bool = False,
    teacher: Teacher | None = None,
    progress: ProgressListener | None = None,
    on_warning: Callable[[str], None] | None = None,
    crash_hook: CrashHook | None = None,
    verbose: bool = False,
    after_commit: Callable[[RunState, Teacher], None] | None = None,
) -> RunOutcome:
    """Run rounds in `run_dir` until the first of the config's bounds, committing each.

    With `teacher` given (an engine shared by tests), it is wrapped with the run's cache when
    `config.teacher.cache` and left open; otherwise the configured teacher is built and closed here.
    `crash_hook` is for tests only (see `CRASH_POINTS`). `after_commit(state, teacher)` runs after
    each committed round (the judge's hook, `pipeline.judge.hook`).
    """
    started = time.monotonic()
    run = RunDir(run_dir)
    progress = progress or ProgressListener()
    inputs = load_inputs(config)  # a bad seeds file, template or recipe setting writes nothing
    if teacher is None and config.teacher.backend == "openai":
        for text in check_reachable(config.teacher.base_urls):  # a wrong URL is said at once
            if on_warning is not None:
                on_warning(text)
    with run.locked():
        identity = teacher.identity if teacher is not None else teacher_identity(config.teacher)
        state, seeds_path, seeds, templates, committed, pending = prepare_run(
            config, run, force=force, teacher=identity, inputs=inputs
        )
        teacher, own_teacher = _open_teacher(config, run, teacher, verbose)
        cache = _cache_of(teacher)
        if cache is not None:  # what a killed invocation paid for after the last commit is still owed
            cache.uncounted_from = 0 if state.rounds_done == 0 else state.cache_entries_counted
        start_usage = teacher.usage.copy()
        outcome = RunOutcome(summary=None, rounds_run=0)
        if pending["tasks"] or pending["rejected"]:
            outcome.resumed_round = state.rounds_done + 1
        with capture_warnings(PipelineWarning) as caught:
            try:
                decided = resolve_constrained(
                    config.decoding.constrained,
                    teacher,
                    chat=config.prompt_style == "chat",
                    saved=state.constrained,
                    base_urls=config.teacher.base_urls if config.teacher.backend == "openai" else [],
                )
                if decided != state.constrained:
                    # Kept before the first request, so a run killed in its first round resumes
                    # with the same decision (and cache keys) without asking the teacher again.
                    state.constrained = decided
                    run.write_state(state)
                ctx = _context(config, state, seeds, templates, committed, teacher, decided.applied, run.path)
                progress.run_started(state, config, teacher.usage)
                rounds = Rounds(
                    ctx,
                    teacher,
                    run,
                    state,
                    pending,
                    RunLength(config, started),
                    progress,
                    crash_hook or no_crash,
                    after_commit,
                    overlap=overlaps(config, after_commit is not None),
                )
                outcome.stopped, outcome.rounds_run = rounds.run()
            finally:
                if own_teacher:
                    teacher.close()
        if on_warning is not None:
            for text in dict.fromkeys(str(w.message) for w in caught):
                on_warning(text)
        outcome.summary = write_summary(run, state, config, seeds_path, len(seeds), teacher)
        outcome.usage = teacher.usage.since(start_usage).as_dict()
        return outcome
