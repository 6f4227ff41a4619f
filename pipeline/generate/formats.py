"""Reply formats: each kind of teacher reply as the parser that reads it and the grammar that writes it.

With `decoding.constrained`, the teacher's decoding is held to the grammar (vLLM structured outputs),
so every reply it finishes parses: the same prompt, the same layout the recipe asks for, and no token
spent on text the parser would throw away. Each format keeps the recipe's rules:

- the items asked for: a self-instruct reply continues the prompt's list from item `first` (9) to
  `last` (15, one before the number the stop strings end on); an Alpaca reply writes items 4..19;
  instances stop at `max_instances` (the stop string "Example {max_instances + 1}");
- the stop strings: a reply may end where the recipe's stop strings end it, at the start of a line
  after a whole item ("\n\n", "\nTask:"), but no field may contain one (the engine would cut the
  reply inside the field, and the cut field would pass for a whole one), nor a word its parser splits
  on ("###", "Example", "Output", "Class label:", ...);
- the length limits: `max_tokens` is the recipe's, and a reply cut by it still loses only its last
  item (the parsers and rounds apply the truncation rule as before). Fields are not bounded in the
  grammar: xgrammar 0.2.8 computes a bounded repetition's token mask in seconds per token on a CPU;
- completion vs chat: a completion reply starts inside the prompt's open item (" <instruction>"); a
  chat reply restates its first number ("9. <instruction>"), which is what the chat parser reads.

A field's first character is a letter (instructions) or not a space (everything else), so no item is
empty. Every format renders a reply from its fields (`render`), so tests check that what the grammar
allows, and what the format builds, parse back into the same fields.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import UserError
from pipeline.generate.classify import Label, parse_label
from pipeline.generate.config import GenerateConfig
from pipeline.generate.grammar import (
    LETTERS,
    NON_SPACE,
    CharSet,
    Rx,
    alt,
    cat,
    field,
    lit,
    opt,
    render,
    render_ebnf,
)
from pipeline.generate.parsing import (
    ALPACA_FIELDS,
    ALPACA_SEPARATOR,
    CLASS_LABEL,
    EXAMPLE,
    INPUT,
    OUTPUT,
    ParsedAlpaca,
    ParsedInstances,
    ParsedInstructions,
    parse_alpaca_reply,
    parse_instances,
    parse_instruction_list,
)
from pipeline.teachers.base import Structured

ONE_LINE = CharSet.excluding("\n")
ANY_TEXT = CharSet.excluding("")
# Item numbers when the stop strings name none (they do in every preset: "\n16", "\n20").
SELF_INSTRUCT_LAST = 15
ALPACA_LAST = 19
_STOP_NUMBER = re.compile(r"\n?(\d+)\s?\.?")


def stop_number(stop: Sequence[str]) -> int | None:
    """The item number a list's stop strings end on ("\\n16", "16." -> 16), if any."""
    numbers = [int(m.group(1)) for s in stop if (m := _STOP_NUMBER.fullmatch(s))]
    return min(numbers) if numbers else None


def last_item(first: int, stop: Sequence[str], default: int) -> int:
    """The last item a reply may write: one before the stop strings' number, never before `first`."""
    number = stop_number(stop)
    return max(first, (number - 1) if number is not None else default)


def terminators(stop: Sequence[str]) -> tuple[str, ...]:
    """How a reply may end by a stop string: at the start of a line (met inside a line, a stop string
    would cut a field short)."""
    return tuple(sorted({s if s.startswith("\n") else "\n" + s for s in stop if s}))


def _check_layout(texts: Sequence[str], stop: Sequence[str], what: str) -> None:
    for text in texts:
        for s in stop:
            if s and s in text:
                raise UserError(
                    f"decoding.constrained: the stop string {s!r} occurs in the {what} reply layout itself "
                    f"({text!r}); remove that stop string or set decoding.constrained: off"
                )


class ReplyFormat(ABC):
    """A reply layout: what the teacher may write (`structured`) and how it is read (`parse`)."""

    @abstractmethod
    def structured(self) -> Structured:
        """The decoding constraint for a request of this kind, as the engine takes it."""

    @abstractmethod
    def matches(self, text: str) -> bool:
        """Whether a finished reply has the layout (how a server that ignored the constraint shows)."""

    @abstractmethod
    def parse(self, text: str, finish_reason: str | None = None) -> Any:
        """What the rounds take from a reply of this kind (the recipe's own parser)."""


class LayoutFormat(ReplyFormat):
    """A format written as fixed text around fields; the engine gets it as a grammar (`grammar`)."""

    stop: tuple[str, ...]

    @abstractmethod
    def layout(self) -> Rx:
        """The reply's syntax tree."""

    @property
    def ends(self) -> tuple[str, ...]:
        """What may follow the last whole item: nothing, or a stop string at a line start."""
        return ("", *terminators(self.stop))

    def end(self) -> Rx:
        return alt(*(lit(t) for t in self.ends)) or lit("")

    def regex(self) -> str:
        """The layout as one regular expression (each field written out wherever it occurs)."""
        return _renderings(self)[0]

    def grammar(self) -> str:
        """The layout as an EBNF grammar, each field once: what the engine is sent."""
        return _renderings(self)[1]

    def structured(self) -> Structured:
        return Structured(grammar=self.grammar())

    def matches(self, text: str) -> bool:
        return _compiled(self.regex()).fullmatch(text) is not None


@functools.lru_cache(maxsize=64)
def _renderings(fmt: LayoutFormat) -> tuple[str, str]:
    """A format's regex and grammar, built once (formats are frozen, so equal formats share them)."""
    layout = fmt.layout()
    return render(layout), render_ebnf(layout)


@functools.lru_cache(maxsize=16)
def _compiled(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def _chain(items: Sequence[Rx], end: Rx, closer: Rx | None = None) -> Rx:
    """items[0], then optionally items[1], and so on; the reply may end after any item (with `end`,
    or with `closer` and then `end`)."""
    rest: Rx | None = None
    for item in reversed(items):
        after = alt(end, rest) if closer is None else alt(end, cat(closer, alt(end, rest)))
        rest = cat(item, after)
    assert rest is not None
    return rest


@dataclass(frozen=True)
class InstructionList(LayoutFormat):
    """Self-Instruct: the reply continues the prompt's numbered list, items `first`..`last`, one per line."""

    first: int
    last: int
    stop: tuple[str, ...]
    chat: bool = False

    def lead(self, number: int) -> str:
        """The text before item `number`: the prompt already wrote the first number in completion style."""
        if number == self.first:
            return f"{number}. " if self.chat else " "
        return f"\n{number}. "

    def render(self, items: Sequence[str]) -> str:
        return "".join(self.lead(self.first + k) + item for k, item in enumerate(items))

    def field(self, number: int) -> Rx:
        follow = self.ends if number == self.last else (*self.ends, self.lead(number + 1))
        return field(self.stop, allowed=ONE_LINE, first=LETTERS, after=self.lead(number), before=follow)

    def layout(self) -> Rx:
        numbers = range(self.first, self.last + 1)
        _check_layout([self.lead(k) for k in numbers], self.stop, "self-instruct")
        return _chain([cat(lit(self.lead(k)), self.field(k)) or lit("") for k in numbers], self.end())

    def parse(self, text: str, finish_reason: str | None = None) -> ParsedInstructions:
        return parse_instruction_list(text, chat=self.chat)


@dataclass(frozen=True)
class Classification(ReplyFormat):
    """Self-Instruct's "Is it classification?": the answer is Yes or No (after a space in completion style)."""

    stop: tuple[str, ...]
    chat: bool = False

    def choices(self) -> tuple[str, ...]:
        return ("Yes", "No") if self.chat else (" Yes", " No")

    def structured(self) -> Structured:
        _check_layout(self.choices(), self.stop, "classification")
        return Structured(choice=self.choices())

    def matches(self, text: str) -> bool:
        return text in self.choices()

    def parse(self, text: str, finish_reason: str | None = None) -> Label:
        return parse_label(text)


@dataclass(frozen=True)
class Instances(LayoutFormat):
    """Self-Instruct instances. Output-first (classification tasks): `Class label: <label>` lines, each
    followed by its input if the task has one. Input-first: `Example k` blocks of an input and an
    `Output:`, or one bare `Output:` for a task without input."""

    classification: bool
    max_instances: int
    stop: tuple[str, ...]

    @property
    def words(self) -> tuple[str, ...]:
        if self.classification:
            return (CLASS_LABEL, *self.stop)
        return (EXAMPLE, INPUT, OUTPUT, *self.stop)

    def lead(self, k: int) -> str:
        if self.classification:
            return f"{CLASS_LABEL} " if k == 1 else f"\n{CLASS_LABEL} "
        return f"{EXAMPLE} {k}\n" if k == 1 else f"\n{EXAMPLE} {k}\n"

    def follow(self, k: int) -> tuple[str, ...]:
        """What may come after instance k's last field."""
        return self.ends if k == self.max_instances else (*self.ends, self.lead(k + 1))

    def _labelled(self, k: int) -> Rx:
        label = field(
            self.words, allowed=ONE_LINE, first=NON_SPACE, after=self.lead(k), before=(*self.follow(k), "\n")
        )
        given = field(self.words, allowed=ANY_TEXT, first=NON_SPACE, after="\n", before=self.follow(k))
        return cat(lit(self.lead(k)), label, opt(cat(lit("\n"), given))) or lit("")

    def _output(self, follow: tuple[str, ...]) -> Rx:
        """`Output:`, a space or a newline (or neither), then the output, which must not be blank."""
        by_field: dict[Rx, list[str]] = {}
        for sep in ("", " ", "\n"):
            text = field(
                self.words, allowed=ANY_TEXT, first=NON_SPACE, after=f"{OUTPUT}:{sep}", before=follow
            )
            by_field.setdefault(text, []).append(sep)
        return cat(
            lit(f"{OUTPUT}:"), alt(*(cat(alt(*map(lit, seps)), f) for f, seps in by_field.items()))
        ) or lit("")

    def _example(self, k: int) -> Rx:
        given = field(
            self.words, allowed=ANY_TEXT, first=NON_SPACE, after=self.lead(k), before=(f"\n{OUTPUT}:",)
        )
        return cat(lit(self.lead(k)), given, lit("\n"), self._output(self.follow(k))) or lit("")

    def render(self, items: Sequence[tuple[str, str]], *, bare: bool = False, sep: str = " ") -> str:
        """A reply from (input, output) pairs; for output-first tasks the output is the class label."""
        if self.classification:
            return "".join(
                self.lead(k) + label + (f"\n{given}" if given else "")
                for k, (given, label) in enumerate(items, start=1)
            )
        if bare:
            (given, output), *rest = items
            if given or rest:
                raise ValueError("a bare Output: is one instance without input")
            return f"{OUTPUT}:{sep}{output}"
        return "".join(
            f"{self.lead(k)}{given}\n{OUTPUT}:{sep}{output}" for k, (given, output) in enumerate(items, 1)
        )

    def layout(self) -> Rx:
        numbers = range(1, self.max_instances + 1)
        if self.classification:
            _check_layout([self.lead(k) for k in numbers], self.stop, "classification-instances")
            return _chain([self._labelled(k) for k in numbers], self.end())
        _check_layout([*(self.lead(k) for k in numbers), f"\n{OUTPUT}: "], self.stop, "instances")
        bare = cat(self._output(self.ends), self.end())
        return alt(bare, _chain([self._example(k) for k in numbers], self.end())) or lit("")

    def parse(self, text: str, finish_reason: str | None = None) -> ParsedInstances:
        return parse_instances(text, finish_reason, self.classification)


@dataclass(frozen=True)
class AlpacaList(LayoutFormat):
    """Alpaca: `###`-separated items `k. Instruction:` / `k. Input:` / `k. Output:`, items `first`..`last`."""

    first: int
    last: int
    stop: tuple[str, ...]
    chat: bool = False

    @property
    def words(self) -> tuple[str, ...]:
        return (ALPACA_SEPARATOR, *(f"{name}:" for name in ALPACA_FIELDS), *self.stop)

    @property
    def closer(self) -> str:
        return f"\n{ALPACA_SEPARATOR}"

    def opening(self, number: int) -> str:
        """The text that opens an item (after the separator); the completion prompt ends with the first
        one's label."""
        label = f"{number}. {ALPACA_FIELDS[0]}: "
        if number == self.first:
            return label if self.chat else " "
        return f"\n{label}"

    def lead(self, number: int) -> str:
        """All the text between the previous item and this one's instruction."""
        return self.opening(number) if number == self.first else self.closer + self.opening(number)

    def labels(self, number: int) -> tuple[str, str]:
        return f"\n{number}. {ALPACA_FIELDS[1]}:\n", f"\n{number}. {ALPACA_FIELDS[2]}:\n"

    def render(self, items: Sequence[tuple[str, str, str]], *, closed: bool = False) -> str:
        """A reply from (instruction, input, output) triples; `closed` ends it with the separator."""
        out = []
        for k, (instruction, given, output) in enumerate(items):
            number = self.first + k
            input_label, output_label = self.labels(number)
            out.append(f"{self.lead(number)}{instruction}{input_label}{given}{output_label}{output}")
        return "".join(out) + (self.closer if closed else "")

    def _item(self, number: int) -> Rx:
        input_label, output_label = self.labels(number)
        follow = (*self.ends, self.closer)
        instruction = field(
            self.words, allowed=ONE_LINE, first=LETTERS, after=self.lead(number), before=(input_label,)
        )
        given = field(
            self.words, allowed=ANY_TEXT, first=NON_SPACE, after=input_label, before=(output_label,)
        )
        output = field(self.words, allowed=ANY_TEXT, first=NON_SPACE, after=output_label, before=follow)
        parts = (lit(self.opening(number)), instruction, lit(input_label), given, lit(output_label), output)
        return cat(*parts) or lit("")

    def layout(self) -> Rx:
        numbers = range(self.first, self.last + 1)
        texts = [t for k in numbers for t in (self.lead(k), *self.labels(k))]
        _check_layout([*texts, self.closer], self.stop, "alpaca")
        return _chain([self._item(k) for k in numbers], self.end(), closer=lit(self.closer))

    def parse(self, text: str, finish_reason: str | None = None) -> ParsedAlpaca:
        return parse_alpaca_reply(text, finish_reason, self.first - 1, chat=self.chat)


@dataclass(frozen=True)
class RunFormats:
    """The reply formats of one run, from its config (the same numbers, stops and limits it sends)."""

    instructions: InstructionList
    classify: Classification
    instances_gen: Instances
    instances_clf: Instances
    alpaca: AlpacaList

    @classmethod
    def from_config(cls, config: GenerateConfig) -> RunFormats:
        chat = config.prompt_style == "chat"
        dec = config.decoding
        first = config.prompt_count + 1
        inst_stop = (*dec.instances.stop, f"{EXAMPLE} {config.filters.max_instances + 1}")
        si_stop = tuple(dec.instructions.stop)
        alpaca_stop = tuple(dec.alpaca.stop)
        return cls(
            instructions=InstructionList(first, last_item(first, si_stop, SELF_INSTRUCT_LAST), si_stop, chat),
            classify=Classification(tuple(dec.classify.stop), chat),
            instances_gen=Instances(False, config.filters.max_instances, inst_stop),
            instances_clf=Instances(True, config.filters.max_instances, inst_stop),
            alpaca=AlpacaList(first, last_item(first, alpaca_stop, ALPACA_LAST), alpaca_stop, chat),
        )

    def instances(self, classification: bool) -> Instances:
        return self.instances_clf if classification else self.instances_gen
