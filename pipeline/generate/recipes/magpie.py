"""Magpie (Xu et al. 2024), one round: an aligned model writes the user's turn itself, then answers it.

No seeds and no few-shot prompt. Each of `batch_size` conversations starts from the pre-query template:
the teacher's chat template rendered up to where a user message begins (`ChatTemplate.pre_query`),
sent as a raw completion, so the model writes what a user would ask. The query passes Magpie's three
filters (`query_reasons`: language by script and stop-word share, a minimum length, runaway
repetition) and the usual instruction filters, then the ROUGE-L check; its answer comes through the
chat template (`ChatTemplate.answer`) and passes the instance filters and the repetition check. With
`magpie.turns` > 1 the next user turn comes from the same trick after the conversation so far; a
conversation is kept only whole, with all its turns. At `close`, the final offer of first queries.

The template is applied here, to raw completions, in-process and over HTTP alike (a server's
`/v1/completions`), from the tokenizer of the teacher's model or of `magpie.chat_template`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from pipeline.core.errors import UserError
from pipeline.generate.config import GenerateConfig, MagpieConfig
from pipeline.generate.prompts import request_seed
from pipeline.generate.recipe import REPLY_CHARS, Ask, Candidate, Phase, Recipe
from pipeline.quality.config import FilterConfig
from pipeline.quality.filters import check_instance, check_instruction
from pipeline.quality.textstats import latin_share, repeat_share, stopword_share
from pipeline.run.schemas import Instance, SeedTask
from pipeline.teachers.base import Completion, Request, SamplingParams

SLOT = "MAGPIE-USER-SLOT-5f1c"
"""Stands in for a user message while rendering: the pre-query template is what comes before it."""
Message = dict[str, str]


@dataclass(frozen=True)
class ChatTemplate:
    """A tokenizer's chat template, rendered to raw text (the tokenizer itself is not kept)."""

    tokenizer: Any
    source: str

    def _render(self, messages: list[Message], generation: bool) -> str:
        return str(
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        )

    def pre_query(self, messages: list[Message]) -> tuple[str, list[str]]:
        """The text up to where the next user message starts, and what ends a user turn (its stop)."""
        text = self._render([*messages, {"role": "user", "content": SLOT}], False)
        if SLOT not in text:
            raise UserError(f"{self.source}: its chat template does not show a user message's text")
        before, after = text.split(SLOT, 1)
        end = after.strip().split()
        return before, end[:1]

    def answer(self, messages: list[Message]) -> str:
        """The conversation so far, then the opening of the assistant's turn."""
        return self._render(messages, True)


@lru_cache(maxsize=4)
def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def chat_template(config: GenerateConfig) -> ChatTemplate:
    """The chat template the teacher speaks, or a `UserError` saying why Magpie cannot run without one."""
    from pipeline.core.model import resolve_model

    name = config.magpie.chat_template or config.teacher.model
    where = "magpie.chat_template" if config.magpie.chat_template else "teacher.model"
    try:
        tokenizer = _load_tokenizer(resolve_model(name))
    except (OSError, ValueError) as exc:
        raise UserError(
            f"method magpie needs the teacher's chat template, and no tokenizer could be loaded for "
            f"{where} {name!r} ({type(exc).__name__}); set magpie.chat_template to the teacher's tokenizer "
            "(a local folder or a downloaded hub name): Magpie writes the template up to a user turn itself "
            "and sends it as a raw completion"
        ) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            f"method magpie needs a teacher with a chat template, and the tokenizer of {where} {name!r} has "
            "none (a base model?): Magpie lets an aligned chat model write the user's turn from its own "
            "template; use an instruct/chat model"
        )
    return ChatTemplate(tokenizer, f"{where} {name!r}")


def query_reasons(
    query: str, finish_reason: str | None, cfg: MagpieConfig, filters: FilterConfig
) -> list[str]:
    """Magpie's filters on a user turn (language, length, repetition), then the usual instruction rules."""
    reasons = []
    foreign = latin_share(query) < cfg.min_latin_share or stopword_share(query) < cfg.min_stopword_share
    if cfg.language == "english" and query.strip() and foreign:
        reasons.append("magpie_language")
    if len(query.split()) < cfg.min_query_words:
        reasons.append("magpie_query_too_short")
    if repeat_share(query) > cfg.max_repeat_share:
        reasons.append("magpie_repetition")
    return reasons + [r for r in check_instruction(query, finish_reason, filters) if r not in reasons]


def reply_reasons(
    query: str, answer: str, finish_reason: str | None, cfg: MagpieConfig, filters: FilterConfig
) -> list[str]:
    """An answer's faults: runaway repetition, cut by the length limit, and the usual instance rules."""
    reasons = ["magpie_repetition"] if repeat_share(answer) > cfg.max_repeat_share else []
    if filters.truncated and finish_reason == "length":
        reasons.append("truncated")
    return reasons + check_instance(Instance(output=answer), filters, instruction=query)


class Magpie(Recipe):
    method = "magpie"
    reads_pool = False  # every conversation starts from the template alone

    @classmethod
    def check(cls, config: GenerateConfig, seeds: list[SeedTask]) -> None:
        chat_template(config)

    def opening(self) -> list[Ask]:
        self.template = chat_template(self.config)
        system = self.config.magpie.system_prompt
        start: list[Message] = [{"role": "system", "content": system}] if system else []
        self.talks: list[list[Message]] = [list(start) for _ in range(self.config.batch_size)]
        self.cands: dict[int, Candidate] = {}
        return [self._ask_query(i, 0) for i in range(self.config.batch_size)]

    def _params(self, kind: str, i: int, turn: int, stop: list[str]) -> SamplingParams:
        decoding = self.config.decoding.query if kind == "query" else self.config.decoding.answer
        seed = request_seed(self.config.seed, self.round_no, kind, f"{i}-t{turn}")
        return SamplingParams(**{**decoding.model_dump(), "stop": [*decoding.stop, *stop], "seed": seed})

    def _ask_query(self, i: int, turn: int) -> Ask:
        prompt, stop = self.template.pre_query(self.talks[i])
        request = Request(prompt=prompt, params=self._params("query", i, turn, stop))
        return Ask(request, partial(self._query, i, turn))

    def _said(self, i: int) -> list[Message]:
        return [m for m in self.talks[i] if m["role"] != "system"]

    def _drop(self, i: int, phase: Phase, turn: int, reasons: list[str], **details: Any) -> None:
        cand = self.cands[i]
        self.reject(
            phase,
            cand.position,
            "instruction" if phase is Phase.INSTRUCTION else "instance",
            reasons,
            cand.instruction,
            key=cand.key,
            request=i,
            turn=turn,
            conversation=self._said(i),
            **details,
        )

    def _query(self, i: int, turn: int, completion: Completion) -> list[Ask]:
        """A user turn: filter it (the first one also for novelty), then ask for its answer."""
        text, finish = completion.texts[0].strip(), completion.finish_reasons[0]
        if turn == 0:
            self.cands[i] = self.candidate(i, 0, text, finish, [])
        reasons = query_reasons(text, finish, self.config.magpie, self.config.filters)
        if reasons:
            phase = Phase.INSTRUCTION if turn == 0 else Phase.INSTANCE
            self._drop(i, phase, turn, reasons, query=text[:REPLY_CHARS], finish_reason=finish)
            return []
        if turn == 0 and not self.is_novel(self.cands[i]):
            return []
        self.talks[i].append({"role": "user", "content": text})
        prompt = self.template.answer(self.talks[i])
        _, stop = self.template.pre_query([])
        request = Request(prompt=prompt, params=self._params("answer", i, turn, stop))
        return [Ask(request, partial(self._answer, i, turn))]

    def _answer(self, i: int, turn: int, completion: Completion) -> list[Ask]:
        """An assistant turn: filter it; then the next user turn, or the whole conversation is ready."""
        text, finish = completion.texts[0].strip(), completion.finish_reasons[0]
        query = self.talks[i][-1]["content"]
        reasons = reply_reasons(query, text, finish, self.config.magpie, self.config.filters)
        if reasons:
            self._drop(i, Phase.INSTANCE, turn, reasons, reply=text[:REPLY_CHARS], finish_reason=finish)
            return []
        self.talks[i].append({"role": "assistant", "content": text})
        if turn + 1 < self.config.magpie.turns:
            return [self._ask_query(i, turn + 1)]
        cand = self.cands[i]
        cand.extra["conversation"] = self._said(i)
        first = self._said(i)[1]["content"]
        self.keep_instances(cand, [Instance(output=first)], [], finish_reason=finish)
        return []
