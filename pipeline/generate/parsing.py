"""Reading teacher replies into candidates. Pure functions that never raise, whatever the text.

What a reply cannot give becomes a `ParseProblem` with a `parse_*` reason code (the caller writes
it to rejected.jsonl), so nothing is dropped silently. The splitting rules are the originals':
`post_process_gpt3_response` of bootstrap_instructions.py and of stanford_alpaca's
generate_instruction.py, and `parse_instances_for_*_task` of prepare_for_finetuning.py. Two
deliberate differences: only the first letter of an instruction is upper-cased (the original's
`str.capitalize()` also lower-cased the rest, turning "NASA" into "nasa"), and Alpaca items are
recognised whatever their number (chat teachers often restart the count).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.run.schemas import Instance

NO_INPUT = "<noinput>"

# Problems a reply can have: the reason codes written to rejected.jsonl (stage "parse").
PARSE_EMPTY_REPLY = "parse_empty_reply"
PARSE_NO_ITEMS = "parse_no_items"
PARSE_PREAMBLE = "parse_preamble"
PARSE_MALFORMED_ITEM = "parse_malformed_item"
PARSE_NO_INSTANCES = "parse_no_instances"
PARSE_NO_CLASS_LABEL = "parse_no_class_label"
TRUNCATED = "truncated"

# The words the parsers split on; `pipeline.generate.formats` keeps them out of the fields it lets a
# teacher write, so the grammars and these parsers read one layout.
ALPACA_SEPARATOR = "###"
ALPACA_FIELDS = ("Instruction", "Input", "Output")
EXAMPLE = "Example"
INPUT = "Input"
OUTPUT = "Output"
CLASS_LABEL = "Class label:"

_SI_SPLIT = re.compile(r"\n\d+\s?\. ")
_CHAT_SPLIT = re.compile(r"\n[ \t]*(?:\d+\s?[.)]|[-*\u2022])[ \t]+")
_CHAT_LEADING_MARK = re.compile(r"^\s*(?:\d+\s?[.)]|[-*\u2022])\s+")
_PREAMBLE = re.compile(r"(:\s*$)|^(sure|certainly|of course|okay|ok|here (are|is))\b", re.IGNORECASE)
_ALPACA_FIELD = re.compile(rf"\d+\.\s+({'|'.join(ALPACA_FIELDS)}):")
_ALPACA_ITEM_START = re.compile(rf"^\s*(?:{ALPACA_SEPARATOR}\s*)?\d+\.\s+{ALPACA_FIELDS[0]}:")
_EXAMPLE = re.compile(rf"{EXAMPLE}\s?\d*\.?")
_OUTPUT = re.compile(rf"{OUTPUT}\s*\d*\s*:")
_INPUT = re.compile(rf"{INPUT}\s*\d*\s*:")
_LEADING_INPUT = re.compile(rf"^{INPUT}\s*\d*\s*:")


@dataclass(frozen=True)
class ParseProblem:
    """Something in a reply that could not become a candidate, with the text it was about."""

    codes: tuple[str, ...]
    text: str


@dataclass
class ParsedInstructions:
    instructions: list[str] = field(default_factory=list)
    problems: list[ParseProblem] = field(default_factory=list)


@dataclass(frozen=True)
class AlpacaItem:
    instruction: str
    input: str
    output: str
    truncated: bool = False


@dataclass
class ParsedAlpaca:
    items: list[AlpacaItem] = field(default_factory=list)
    problems: list[ParseProblem] = field(default_factory=list)


@dataclass
class ParsedInstances:
    instances: list[Instance] = field(default_factory=list)
    problems: list[ParseProblem] = field(default_factory=list)


def _normalize(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[:1].upper() + text[1:]


def parse_instruction_list(text: str, *, chat: bool = False) -> ParsedInstructions:
    """Instructions from a reply that continues a numbered list (self-instruct).

    Completion style: the reply starts right after the prompt's open number, and later items start
    with `\\nN. `. Chat style: the reply may restate the number, use bullets, or open with a line of
    its own ("Here are some more tasks:"), which is reported as `parse_preamble`, not taken as a task.
    Whether the reply was cut off is the caller's business (the finish reason goes to the filters).
    """
    out = ParsedInstructions()
    if not text or not text.strip():
        out.problems.append(ParseProblem((PARSE_EMPTY_REPLY,), text or ""))
        return out
    if chat:
        chunks = _CHAT_SPLIT.split("\n" + text.strip())
        head = chunks[0].strip()
        if _PREAMBLE.search(head):
            out.problems.append(ParseProblem((PARSE_PREAMBLE,), head))
            chunks = chunks[1:]
        else:
            chunks[0] = _CHAT_LEADING_MARK.sub("", head, count=1)
    else:
        chunks = _SI_SPLIT.split(text)
    for chunk in chunks:
        instruction = _normalize(chunk)
        if instruction:
            out.instructions.append(instruction)
    if not out.instructions and not out.problems:
        out.problems.append(ParseProblem((PARSE_NO_ITEMS,), text))
    return out


def parse_alpaca_reply(
    text: str, finish_reason: str | None, num_prompt_tasks: int, *, chat: bool = False
) -> ParsedAlpaca:
    """Instruction/input/output triples from an Alpaca reply; a cut-off reply loses only its last item.

    The completion reply starts inside item `num_prompt_tasks + 1` ("... Instruction:" was the
    prompt's end), so that prefix is put back before splitting on `###`. A chat reply that starts
    with its own numbered item is taken as it is.
    """
    out = ParsedAlpaca()
    if not text or not text.strip():
        out.problems.append(ParseProblem((PARSE_EMPTY_REPLY,), text or ""))
        return out
    numbered = chat and _ALPACA_ITEM_START.match(text) is not None
    raw = text if numbered else f"{num_prompt_tasks + 1}. Instruction:" + text
    pieces = raw.split(ALPACA_SEPARATOR)
    cut = finish_reason == "length"
    for index, piece in enumerate(pieces):
        if not piece.strip():
            continue
        last = index == len(pieces) - 1
        parts = _ALPACA_FIELD.split(piece)
        if len(parts) != 7 or tuple(parts[1::2]) != ALPACA_FIELDS:
            # A cut-off last item is incomplete because of the length limit, not the teacher's format.
            codes = (TRUNCATED,) if (last and cut) else (PARSE_MALFORMED_ITEM,)
            out.problems.append(ParseProblem(codes, piece.strip()))
            continue
        instruction = _normalize(parts[2])
        given = parts[4].strip()
        given = "" if given.lower() == NO_INPUT else given
        out.items.append(AlpacaItem(instruction, given, parts[6].strip(), truncated=last and cut))
    if not out.items and not out.problems:
        out.problems.append(ParseProblem((PARSE_NO_ITEMS,), text))
    return out


def _split_input_output(text: str) -> tuple[str, str]:
    """prepare_for_finetuning's `parse_input_output`: text before `Output:` is the input."""
    if _OUTPUT.search(text):
        parts = _OUTPUT.split(text)
        given, output = parts[0].strip(), parts[1].strip()
    else:
        given, output = "", text.strip()
    if _INPUT.search(output):
        output = _INPUT.split(output)[0].strip()
    given = _LEADING_INPUT.sub("", given).strip()
    return given, output


def parse_generation_instances(text: str, finish_reason: str | None) -> ParsedInstances:
    """Input-first instances: `Example k` blocks of `<input fields>` then `Output:`, or one bare `Output:`."""
    out = ParsedInstances()
    raw = (text or "").strip()
    if _EXAMPLE.search(raw):
        blocks = [b.strip() for b in _EXAMPLE.split(raw) if b.strip()]
    elif _OUTPUT.search(raw):
        blocks = [raw]
    else:
        code = PARSE_EMPTY_REPLY if not raw else PARSE_NO_INSTANCES
        out.problems.append(ParseProblem((code,), raw))
        return out
    pairs = [_split_input_output(b) for b in blocks]
    if not pairs:
        out.problems.append(ParseProblem((PARSE_NO_INSTANCES,), raw))
        return out
    if finish_reason == "length" and pairs:
        given, output = pairs.pop()
        out.problems.append(ParseProblem((TRUNCATED,), f"{given}\n{output}".strip()))
    out.instances = [Instance(input=g, output=o) for g, o in pairs]
    return out


def parse_classification_instances(text: str, finish_reason: str | None) -> ParsedInstances:
    """Output-first instances: `Class label: <label>` lines, each followed by its input (if any)."""
    out = ParsedInstances()
    raw = text or ""
    if CLASS_LABEL not in raw:
        code = PARSE_EMPTY_REPLY if not raw.strip() else PARSE_NO_CLASS_LABEL
        out.problems.append(ParseProblem((code,), raw.strip()))
        return out
    pairs: list[tuple[str, str]] = []
    for block in raw.split(CLASS_LABEL)[1:]:
        fields = block.strip().split("\n", 1)
        label = fields[0].strip()
        given = fields[1].strip() if len(fields) == 2 else ""
        pairs.append((given, label))
    if finish_reason == "length" and pairs:
        given, label = pairs.pop()
        out.problems.append(ParseProblem((TRUNCATED,), f"{label}\n{given}".strip()))
    out.instances = [Instance(input=g, output=o) for g, o in pairs]
    return out


def parse_instances(text: str, finish_reason: str | None, is_classification: bool) -> ParsedInstances:
    """Output-first parsing for classification tasks, input-first otherwise, as they were prompted."""
    if is_classification:
        return parse_classification_instances(text, finish_reason)
    return parse_generation_instances(text, finish_reason)
