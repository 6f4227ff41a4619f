"""What a recipe is made of: asks to the teacher, candidates, their verdicts, and the stages recipes share.

A recipe (one `Recipe` object per round) turns prompts into candidates and verdicts and knows nothing
of commits, resume, crash points or progress (`pipeline.generate.protocol` owns those). It speaks to
the teacher only through `Ask`s: its `opening` asks, and the follow-ups each `Ask.then` returns when
its reply arrives. Replies arrive in any order, so a recipe decides per candidate as replies come in
and leaves every decision that depends on order (the final ROUGE-L offer, task ids, the order of the
records) to `close`, which walks the candidates in candidate order.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import product
from typing import TYPE_CHECKING, Any

from pipeline.generate.classify import Label
from pipeline.generate.config import GenerateConfig
from pipeline.generate.formats import ReplyFormat, RunFormats
from pipeline.generate.parsing import ParseProblem
from pipeline.generate.prompts import Templates
from pipeline.quality.dedup import DedupResult, RougeIndex
from pipeline.quality.filters import check_instruction, filter_instances
from pipeline.run.rundir import TASK_STAGES
from pipeline.run.schemas import Instance, MachineTask, Rejection, SeedTask, TeacherIdentity
from pipeline.teachers.base import Completion, Request

if TYPE_CHECKING:
    from pipeline.curate.semantic import SemanticFilter

REPLY_CHARS = 4000
"""How much of a teacher reply a rejection record keeps."""


@dataclass(frozen=True)
class Ask:
    """A request for the teacher, and what to do with its completion: `then` may return follow-up asks."""

    request: Request
    then: Callable[[Completion], list[Ask]]


@dataclass
class RunContext:
    """What every round of a run reads (config, seeds, templates) and grows (pool, ROUGE-L index, RNG).

    The protocol builds it once per invocation and adds each committed round's tasks to `pool`; the
    RNG is the run's, saved in state.json after each round, so a redone round draws the same prompts.
    """

    config: GenerateConfig
    seeds: list[SeedTask]
    templates: Templates
    index: RougeIndex
    pool: list[MachineTask]
    rng: random.Random
    teacher: TeacherIdentity
    constrained: bool = False  # hold each request to its reply format (`pipeline.generate.constrained`)
    semantic: SemanticFilter | None = None  # dedup.semantic_duplicate (`pipeline.curate.semantic`)
    formats: RunFormats = field(init=False)

    def __post_init__(self) -> None:
        self.formats = RunFormats.from_config(self.config)


@dataclass
class Candidate:
    """A task on its way through the stages of a round.

    `position` (reply, item) is its place in candidate order, the order in which the originals
    process a batch: final offers, ids and records follow it, whatever order replies arrived in.
    """

    key: str
    position: tuple[int, int]
    instruction: str
    finish_reason: str | None
    prompt_ids: list[str]
    instances: list[Instance] = field(default_factory=list)
    label: Label | None = None
    ready: bool = False  # passed every stage before the final offer
    extra: dict[str, Any] = field(default_factory=dict)
    """Further `MachineTask` fields a recipe fills (evol-instruct's `evolution`, magpie's `conversation`)."""

    @property
    def request(self) -> int:
        """Which of the round's opening requests it came from."""
        return self.position[0]


class Phase(IntEnum):
    """The stages in the order a sequential round records them: rejected.jsonl lists a round's
    records by phase, then by candidate position, so arrival order never shows in the file."""

    PARSE = 0
    INSTRUCTION = 1
    NOVELTY = 2
    INSTANCE = 3
    OFFER = 4


@dataclass
class RoundResult:
    tasks: list[MachineTask]
    rejections: list[Rejection]
    candidate_count: int
    labels: Counter[str]


class RejectionLog:
    """A round's rejections, written as they happen and read back in (phase, position) order."""

    def __init__(self) -> None:
        self._entries: list[tuple[Phase, tuple[int, int], Rejection]] = []

    def add(self, phase: Phase, position: tuple[int, int], rejection: Rejection) -> None:
        self._entries.append((phase, position, rejection))

    def ordered(self) -> list[Rejection]:
        # A stable sort: several records of one candidate in one phase keep the order they were made in.
        return [rej for _, _, rej in sorted(self._entries, key=lambda e: (e[0], e[1]))]


class Recipe(ABC):
    """One round of one generation method: `opening` asks, `Ask.then` reacts, `close` decides.

    Subclasses implement `opening` (sample this round's prompts from `ctx.rng`, in a fixed order, and
    return one `Ask` per prompt) and the `then` callbacks, which build candidates with `candidate`
    and pass them through the shared stages below; `close` then offers every `ready` candidate to
    the ROUGE-L index in candidate order.
    """

    method: str = ""
    reads_pool: bool = True
    """Whether `opening` reads `ctx.pool` (which this round's decisions extend); False for methods that
    draw from the seeds alone (alpaca, magpie), whose next opening is known before a round closes."""

    def __init__(self, ctx: RunContext, round_no: int):
        self.ctx = ctx
        self.config = ctx.config
        self.round_no = round_no
        self.candidates: list[Candidate] = []
        self.rejections = RejectionLog()
        self.settled: set[tuple[int, int]] = set()  # positions of candidates rejected as a whole

    @classmethod  # noqa: B027 - an optional hook: most methods can run any config
    def check(cls, config: GenerateConfig, seeds: list[SeedTask]) -> None:
        """Refuse a config this method cannot run with a `UserError`, before the teacher is opened or
        asked anything (magpie: no chat template; evol-instruct: no run to evolve)."""

    @property
    def chat(self) -> bool:
        return self.config.prompt_style == "chat"

    @abstractmethod
    def opening(self) -> list[Ask]:
        """The round's first requests; every RNG draw of the round happens here."""

    def close(self) -> RoundResult:
        """The order-dependent decisions, once every reply is in: final offer, ids, label counts."""
        ordered = sorted(self.candidates, key=lambda c: c.position)
        tasks = self._final_offer([c for c in ordered if c.ready])
        labels: Counter[str] = Counter(c.label.value for c in ordered if c.label is not None)
        return RoundResult(tasks, self.rejections.ordered(), len(self.candidates), labels)

    def waiting(self) -> int:
        """Candidates neither ready nor rejected: those still waiting on a reply."""
        return sum(1 for c in self.candidates if not c.ready and c.position not in self.settled)

    def hoped(self, most_waiting: int) -> list[list[MachineTask]] | None:
        """What `close` would keep under each outcome of the candidates still waiting on a reply (each
        passes its remaining stages or not), most likely first, for asking the next round early
        (`pipeline.generate.overlap`); None while more than `most_waiting` wait. The final offer is
        replayed on a scratch index and the kept numbered as `close` numbers them; instances not in yet
        are empty. The likelihood of passing is this round's own share so far."""
        from pipeline.generate.overlap import would_keep

        ordered = sorted(self.candidates, key=lambda c: c.position)
        waiting = [c for c in ordered if not c.ready and c.position not in self.settled]
        if len(waiting) > most_waiting:
            return None
        ready = sum(c.ready for c in ordered)
        share = (ready + 1) / (ready + len(self.settled) + 2)  # Laplace: never 0 or 1
        outcomes: dict[tuple[str, ...], tuple[float, list[Candidate]]] = {}
        for passes in product((True, False), repeat=len(waiting)):
            passing = {c.position for c, ok in zip(waiting, passes, strict=True) if ok}
            hopeful = [c for c in ordered if c.ready or c.position in passing]
            kept = [
                c
                for c, keep in zip(
                    hopeful, would_keep(self.ctx.index, [c.instruction for c in hopeful]), strict=True
                )
                if keep
            ]
            odds = share ** len(passing) * (1 - share) ** (len(waiting) - len(passing))
            key = tuple(c.key for c in kept)
            outcomes[key] = (outcomes.get(key, (0.0, kept))[0] + odds, kept)
        ranked = sorted(outcomes.values(), key=lambda o: -o[0])
        return [[self._task(c, n, None, 0.0) for n, c in enumerate(kept)] for _, kept in ranked]

    # -- building blocks ---------------------------------------------------------------------------
    def held(self, fmt: ReplyFormat) -> dict[str, Any]:
        """`make_request` keywords holding a request to its reply format (none when decoding is free)."""
        return {"structured": fmt.structured()} if self.ctx.constrained else {}

    def candidate(
        self, reply: int, item: int, instruction: str, finish_reason: str | None, prompt_ids: list[str]
    ) -> Candidate:
        """A new candidate, counted in the round's candidates."""
        key = f"r{self.round_no:04d}-q{reply:03d}-c{item:02d}"
        cand = Candidate(key, (reply, item), instruction, finish_reason, prompt_ids)
        self.candidates.append(cand)
        return cand

    def reject(
        self,
        phase: Phase,
        position: tuple[int, int],
        stage: str,
        reasons: list[str],
        instruction: str,
        **details: Any,
    ) -> None:
        if stage in TASK_STAGES:
            self.settled.add(position)
        rejection = Rejection(
            round=self.round_no,
            stage=stage,
            reasons=list(reasons),
            instruction=instruction,
            candidate=details,
        )
        self.rejections.add(phase, position, rejection)

    def parse_problems(
        self, reply: int, problems: list[ParseProblem], finish_reason: str | None, prompt_ids: list[str]
    ) -> None:
        """Record what could not be read out of a reply (not candidates: nothing was proposed)."""
        for j, problem in enumerate(problems):
            self.reject(
                Phase.PARSE,
                (reply, j),
                "parse",
                list(problem.codes),
                "",
                key=f"r{self.round_no:04d}-q{reply:03d}-p{j:02d}",
                request=reply,
                reply=problem.text[:REPLY_CHARS],
                finish_reason=finish_reason,
                prompt_ids=prompt_ids,
            )

    def passes_instruction_filters(self, cand: Candidate) -> bool:
        reasons = check_instruction(cand.instruction, cand.finish_reason, self.config.filters)
        if reasons:
            self.reject(
                Phase.INSTRUCTION,
                cand.position,
                "instruction",
                reasons,
                cand.instruction,
                key=cand.key,
                request=cand.request,
                finish_reason=cand.finish_reason,
                prompt_ids=cand.prompt_ids,
            )
        return not reasons

    def is_novel(self, cand: Candidate) -> bool:
        """Check against the index as it was at round start (nothing is offered before `close`), so
        the verdict does not depend on which replies came back first; no instance is paid for a copy."""
        verdict = self.ctx.index.check(cand.instruction)
        if not verdict.kept:
            self._dedup_reject(Phase.NOVELTY, cand, verdict)
        return verdict.kept

    def keep_instances(
        self, cand: Candidate, instances: list[Instance], problems: list[ParseProblem], **details: Any
    ) -> bool:
        """Filter a candidate's instances; record what is dropped; mark it ready unless none is left."""
        kept, dropped = filter_instances(instances, self.config.filters, instruction=cand.instruction)
        record = {"key": cand.key, "request": cand.request}
        if not kept:
            reasons = ["no_valid_instances"]
            for code in [c for p in problems for c in p.codes] + [c for _, codes in dropped for c in codes]:
                if code not in reasons:
                    reasons.append(code)
            self.reject(
                Phase.INSTANCE,
                cand.position,
                "instance",
                reasons,
                cand.instruction,
                **record,
                is_classification=cand.label is Label.YES,
                prompt_ids=cand.prompt_ids,
                instances=[i.model_dump() for i in instances],
                **details,
            )
            return False
        # The task survives; each instance it lost is still recorded, so nothing vanishes silently.
        for m, problem in enumerate(problems):
            self.reject(
                Phase.INSTANCE,
                cand.position,
                "instance_dropped",
                list(problem.codes),
                cand.instruction,
                **{**record, "key": f"{cand.key}-x{m:02d}"},
                text=problem.text[:REPLY_CHARS],
            )
        for m, (instance, codes) in enumerate(dropped):
            self.reject(
                Phase.INSTANCE,
                cand.position,
                "instance_dropped",
                list(codes),
                cand.instruction,
                **{**record, "key": f"{cand.key}-i{m:02d}"},
                instance=instance.model_dump(),
            )
        cand.instances = kept
        cand.ready = True
        return True

    def _dedup_reject(self, phase: Phase, cand: Candidate, verdict: DedupResult) -> None:
        self.reject(
            phase,
            cand.position,
            "dedup",
            ["rouge_l_duplicate"],
            cand.instruction,
            key=cand.key,
            request=cand.request,
            max_score=verdict.max_score,
            most_similar=dict(list(verdict.most_similar.items())[:3]),
            prompt_ids=cand.prompt_ids,
        )

    def _semantic_offer(self, cands: list[Candidate]) -> list[tuple[Candidate, DedupResult]]:
        """ROUGE-L first, then the embedding index, one candidate at a time in candidate order: a
        candidate counts against later ones only once it passed both."""
        semantic = self.ctx.semantic
        assert semantic is not None
        vectors = semantic.embed([c.instruction for c in cands])
        passed = []
        for cand, vector in zip(cands, vectors, strict=True):
            verdict = self.ctx.index.check(cand.instruction)
            if not verdict.kept:
                self._dedup_reject(Phase.OFFER, cand, verdict)
                continue
            near = semantic.check(vector)
            if not near.kept:
                self.reject(
                    Phase.OFFER,
                    cand.position,
                    "dedup",
                    ["semantic_duplicate"],
                    cand.instruction,
                    key=cand.key,
                    request=cand.request,
                    similarity=round(near.nearest.similarity, 4),
                    nearest_id=near.nearest.label,
                    nearest=semantic.text_of(near.nearest.label),
                    prompt_ids=cand.prompt_ids,
                )
                continue
            passed.append((cand, self.ctx.index.offer(cand.instruction)))
            semantic.add(vector, [f"r{self.round_no:04d}-{len(passed) - 1:04d}"], [cand.instruction])
        return passed

    def _final_offer(self, cands: list[Candidate]) -> list[MachineTask]:
        """Offer in candidate order (an earlier kept one counts against every later one); number the kept."""
        if self.ctx.semantic is not None:
            offered = self._semantic_offer(cands)
        else:
            verdicts = self.ctx.index.offer_many([c.instruction for c in cands])
            offered = list(zip(cands, verdicts, strict=True))
        tasks = []
        now = time.time()
        for cand, verdict in offered:
            if not verdict.kept:
                self._dedup_reject(Phase.OFFER, cand, verdict)
                continue
            tasks.append(self._task(cand, len(tasks), verdict, now))
        return tasks

    def _task(self, cand: Candidate, number: int, verdict: DedupResult | None, now: float) -> MachineTask:
        """The kept task a candidate becomes, numbered in the round's kept order (with its final
        offer's verdict; None for a guess, `hoped`)."""
        verdict = verdict or DedupResult(kept=True, max_score=0.0)
        return MachineTask(
            id=f"r{self.round_no:04d}-{number:04d}",
            instruction=cand.instruction,
            instances=cand.instances,
            is_classification=cand.label is Label.YES,
            round=self.round_no,
            method=self.config.method,
            teacher=self.ctx.teacher,
            prompt_ids=cand.prompt_ids,
            most_similar=verdict.most_similar,
            avg_similarity=verdict.avg_similarity,
            avg_similarity_se=verdict.avg_similarity_se,
            avg_similarity_sample=verdict.avg_similarity_sample,
            created_at=now,
            **cand.extra,
        )
