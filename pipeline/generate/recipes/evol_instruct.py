"""Evol-Instruct (WizardLM, Xu et al. 2023), one round: rewrite tasks of the pool into harder or new ones.

`batch_size` parents drawn from the pool (the seeds, or the kept tasks of `evol.from_run`, plus this
run's kept evolutions) -> one operation each, drawn from `evol.operations`: the five in-depth ones
(add constraints, deepen, concretize, more reasoning steps, complicate the input) or in-breadth
mutation -> the paper's elimination rules on the rewrite (`evolution_reasons`) together with the
usual instruction filters -> ROUGE-L check against the index -> the teacher answers the rewrite ->
the answer rules (`answer_reasons`) and the instance filters; at `close`, the final offer. A kept task
records `evolution: {parent, operation, depth}`; so does every rejection of the round, so the report
can show the share kept per operation and per depth. A failed evolution leaves its parent in the
pool, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from pipeline.core.errors import UserError
from pipeline.generate.config import EvolConfig, GenerateConfig
from pipeline.generate.prompts import answer_prompt, evolve_prompt, make_request, request_seed
from pipeline.generate.recipe import REPLY_CHARS, Ask, Candidate, Phase, Recipe
from pipeline.quality.config import FilterConfig
from pipeline.quality.filters import check_instruction
from pipeline.quality.rouge import rouge_l
from pipeline.quality.textstats import content_share, content_words, words
from pipeline.run.reader import Run
from pipeline.run.schemas import Evolution, Instance, MachineTask, SeedTask
from pipeline.teachers.base import Completion


@dataclass(frozen=True)
class Parent:
    """A task of the pool as an evolution sees it: the instruction with its first input, if any."""

    id: str
    text: str
    depth: int

    @classmethod
    def of(cls, task: SeedTask | MachineTask) -> Parent:
        first = task.instances[0].input.strip() if task.instances else ""
        text = task.instruction.strip() + (f"\n\n{first}" if first else "")
        depth = task.evolution.depth if isinstance(task, MachineTask) and task.evolution else 0
        return cls(task.id, text, depth)


# -- the paper's elimination rules, judge-free: (parent, rewrite, settings) -> reason codes ------------
COPY_NGRAM = 5
"""A run of this many words of the evolution prompt's own text (not of the parent) is a copy of it."""


def _ngrams(text: str, n: int = COPY_NGRAM) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def copies_prompt(evolved: str, parent: str, prompt: str, markers: list[str]) -> bool:
    """The rewrite repeats the evolution prompt: one of its labels ("Rewritten task", "#Rewritten
    Prompt#"...), or five words in a row of its instructions that the parent does not have."""
    lowered = evolved.casefold()
    if any(marker.casefold() in lowered for marker in markers):
        return True
    return bool(_ngrams(evolved) & (_ngrams(prompt) - _ngrams(parent)))


def evolution_reasons(parent: str, evolved: str, cfg: EvolConfig, prompt: str = "") -> list[str]:
    """Why a rewrite is no evolution: it copies the evolution prompt (`prompt`, the text the teacher
    was shown), is too short, brings fewer than `min_new_words` content words its parent lacks (no
    information gain), or is nearly the parent again by ROUGE-L."""
    reasons = []
    if copies_prompt(evolved, parent, prompt, cfg.copy_markers):
        reasons.append("evol_copies_prompt")
    if len(evolved.split()) < cfg.min_words:
        reasons.append("evol_too_short")
    if len(set(content_words(evolved)) - set(content_words(parent))) < cfg.min_new_words:
        reasons.append("evol_no_new_information")
    if evolved.strip() and rouge_l(parent, evolved) >= cfg.max_parent_rouge:
        reasons.append("evol_near_parent")
    return reasons


def answer_reasons(
    answer: str, finish_reason: str | None, cfg: EvolConfig, filters: FilterConfig
) -> list[str]:
    """Why the teacher failed to answer a rewrite: a short reply with a refusal word (the paper: "sorry"
    and under 80 words), a reply that is mostly punctuation and stop words, or one cut by the limit."""
    reasons = []
    lowered = answer.casefold()
    short = len(answer.split()) < cfg.refusal_max_words
    if short and any(word.casefold() in lowered for word in cfg.refusal_words):
        reasons.append("evol_answer_refused")
    if content_share(answer) < cfg.min_content_share:
        reasons.append("evol_answer_empty")
    if filters.truncated and finish_reason == "length":
        reasons.append("truncated")
    return reasons


def clean_rewrite(text: str) -> str:
    """The rewrite as the task it proposes: outer whitespace and one pair of wrapping quotes dropped."""
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def pool_start(cfg: EvolConfig, seeds: list[SeedTask]) -> list[Parent]:
    """Where evolution starts: the seeds, or the kept tasks of `evol.from_run`."""
    if cfg.from_run is None:
        return [Parent.of(s) for s in seeds]
    try:
        tasks = Run.open(cfg.from_run).committed_tasks()
    except UserError as exc:
        raise UserError(f"evol.from_run (--from): {exc}") from exc
    if not tasks:
        raise UserError(f"evol.from_run: {cfg.from_run} has no kept tasks to evolve")
    return [Parent.of(t) for t in tasks]


class EvolInstruct(Recipe):
    method = "evol-instruct"

    @classmethod
    def check(cls, config: GenerateConfig, seeds: list[SeedTask]) -> None:
        pool_start(config.evol, seeds)

    def opening(self) -> list[Ask]:
        cfg, rng = self.config, self.ctx.rng
        pool = pool_start(cfg.evol, self.ctx.seeds) + [Parent.of(t) for t in self.ctx.pool]
        k = cfg.batch_size
        parents = rng.sample(pool, k) if len(pool) >= k else [rng.choice(pool) for _ in range(k)]
        self.picked = [(parent, rng.choice(cfg.evol.operations)) for parent in parents]
        self.lineage = [
            Evolution(parent=p.id, operation=op, depth=p.depth + 1).model_dump() for p, op in self.picked
        ]
        return [
            Ask(
                make_request(
                    evolve_prompt(self.ctx.templates[f"evolve_{op}"], op, parent.text),
                    cfg.prompt_style,
                    cfg.decoding.evolve,
                    request_seed(cfg.seed, self.round_no, "evolve", i),
                ),
                partial(self._evolved, i),
            )
            for i, (parent, op) in enumerate(self.picked)
        ]

    def reject(
        self,
        phase: Phase,
        position: tuple[int, int],
        stage: str,
        reasons: list[str],
        instruction: str,
        **details: Any,
    ) -> None:
        """Every record of the round names the evolution it judged (operation, depth, parent)."""
        super().reject(
            phase, position, stage, reasons, instruction, evolution=self.lineage[position[0]], **details
        )

    def _evolved(self, i: int, completion: Completion) -> list[Ask]:
        """The rewrite: the elimination rules and the usual filters in one verdict, then novelty."""
        text, finish = clean_rewrite(completion.texts[0]), completion.finish_reasons[0]
        parent, _ = self.picked[i]
        cand = self.candidate(i, 0, text, finish, [parent.id])
        cand.extra["evolution"] = Evolution(**self.lineage[i])
        op = self.lineage[i]["operation"]
        reasons = evolution_reasons(parent.text, text, self.config.evol, self.ctx.templates[f"evolve_{op}"])
        reasons += check_instruction(text, finish, self.config.filters)
        if reasons:
            self.reject(
                Phase.INSTRUCTION,
                cand.position,
                "instruction",
                reasons,
                text,
                key=cand.key,
                request=i,
                parent_text=parent.text,
                finish_reason=finish,
                prompt_ids=cand.prompt_ids,
            )
            return []
        return [self._answer(cand)] if self.is_novel(cand) else []

    def _answer(self, cand: Candidate) -> Ask:
        cfg = self.config
        stop = [*cfg.decoding.answer.stop] + (["\n### "] if cfg.prompt_style == "completion" else [])
        request = make_request(
            answer_prompt(self.ctx.templates["answer"], cand.instruction, cfg.prompt_style),
            cfg.prompt_style,
            cfg.decoding.answer,
            request_seed(cfg.seed, self.round_no, "answer", cand.key),
            stop=stop,
        )
        return Ask(request, partial(self._answered, cand))

    def _answered(self, cand: Candidate, completion: Completion) -> list[Ask]:
        text, finish = completion.texts[0].strip(), completion.finish_reasons[0]
        reasons = answer_reasons(text, finish, self.config.evol, self.config.filters)
        if reasons:
            self.reject(
                Phase.INSTANCE,
                cand.position,
                "instance",
                reasons,
                cand.instruction,
                key=cand.key,
                request=cand.request,
                reply=text[:REPLY_CHARS],
                finish_reason=finish,
                prompt_ids=cand.prompt_ids,
            )
            return []
        self.keep_instances(cand, [Instance(output=text)], [], reply=text[:REPLY_CHARS], finish_reason=finish)
        return []
