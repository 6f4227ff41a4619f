"""Building teacher prompts for both recipes, in completion or chat style.

Each template under `pipeline/generate/templates/` (or the user's file named in `templates:`) is the fixed
prefix of its prompt, and the code appends the variable part in the same shape as the examples before
it, so the teacher continues the pattern exactly where it has to. Trailing whitespace of a template
file (its final newline, say) is not part of the template: a file with or without it gives the same
prompts. What each template holds and what the code appends:

- `instructions` / `instructions_clf` (self-instruct): a header; then, on the next line, `1. <task>`
  ... `8. <task>` and a final `9.` that the teacher continues (`encode_prompt` in
  bootstrap_instructions.py).
- `classify`, `instances_clf` (output-first), `instances_gen` (input-first): few-shot examples, each
  opening with `Task: <instruction>` on one line, and the label of the new task last (`Task:`); then
  ` <instruction>` on that line, and `\nIs it classification?` (classify) or `\n` (instances). A
  template that does not end in a label, or whose examples put their instruction on another line
  than the label, is refused when it is loaded.
- `alpaca`: the requirements, ending in `List of 20 tasks:`; then a blank line and `###`-separated
  items `k. Instruction:` / `k. Input:` / `k. Output:`, and an open `4. Instruction:`.

- `evolve_<operation>` (evol-instruct): how to rewrite a task; then a blank line, `Original task:` (for
  `breadth`, `Starting task:`) and the parent task on the lines after it, a blank line and the open
  `Rewritten task:` (`New task:`).
- `answer` (evol-instruct, completion style): a header ending in `### Task:`; then the task on the next
  line, a blank line and an open `### Response:` line. In chat style the task alone is the message.

In chat style the same text is sent as a single user message. `tests/golden/` pins every bundled
template's prompts byte for byte.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import InputFileError, UserError
from pipeline.generate.config import Decoding, PromptStyle, TemplatePaths
from pipeline.generate.parsing import NO_INPUT
from pipeline.run.schemas import MachineTask, SeedTask
from pipeline.teachers.base import Request, SamplingParams

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAMES = (
    "instructions",
    "instructions_clf",
    "classify",
    "instances_clf",
    "instances_gen",
    "alpaca",
    "evolve_constraints",
    "evolve_deepen",
    "evolve_concretize",
    "evolve_reasoning",
    "evolve_input",
    "evolve_breadth",
    "answer",
)
FEW_SHOT_TEMPLATES = ("classify", "instances_clf", "instances_gen")
CLASSIFY_SUFFIX = "\nIs it classification?"


@dataclass(frozen=True)
class Templates:
    """The prompt prefixes of a run, with where each came from and a digest for the config check."""

    texts: dict[str, str]
    sources: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.texts[name]

    def digests(self) -> dict[str, str]:
        return {
            name: hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] for name, text in self.texts.items()
        }


def load_templates(paths: TemplatePaths | None = None) -> Templates:
    """Read the bundled templates, replacing those the config points at a user's file.

    Trailing whitespace is dropped here, so the digests (and the run's config check) follow what the
    teacher sees, not whether a file ends in a newline.
    """
    paths = paths or TemplatePaths()
    texts: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in TEMPLATE_NAMES:
        override = getattr(paths, name)
        path = Path(override) if override else TEMPLATE_DIR / f"{name}.txt"
        if not path.is_file():
            raise UserError(f"templates.{name}: no such template file: {path}")
        text = path.read_text(encoding="utf-8").rstrip()
        if not text:
            raise UserError(f"templates.{name}: template file is empty: {path}")
        if name in FEW_SHOT_TEMPLATES:
            check_few_shot_template(text, f"{path} (templates.{name})")
        texts[name] = text
        sources[name] = str(path) if override else f"bundled:{name}.txt"
    return Templates(texts=texts, sources=sources)


def check_few_shot_template(text: str, where: str) -> None:
    """Refuse a few-shot template whose new task would not read like its examples.

    The new task goes right after the template's last line, its label (`Task:`), as
    `Task: <instruction>` on one line; so the template must end in a label, and every example line that
    opens with that label must carry its instruction on the same line.
    """
    lines = text.rstrip().split("\n")
    label = lines[-1].strip()
    if not label.endswith(":"):
        raise InputFileError(
            where,
            [
                f"line {len(lines)}: the template must end with the label the new task's instruction "
                f"follows, such as 'Task:'; its last line is {lines[-1]!r}"
            ],
        )
    problems = [
        f"line {number}: {line.rstrip()!r} has no instruction after {label!r}; write each example as "
        f"'{label} <instruction>' on one line, as the new task is written"
        for number, line in enumerate(lines[:-1], start=1)
        if line.startswith(label) and not _label_line_is_whole(line[len(label) :])
    ]
    if problems:
        raise InputFileError(where, problems)


def _label_line_is_whole(rest: str) -> bool:
    """What follows an example's label: one space, then its instruction."""
    return rest.startswith(" ") and bool(rest.strip())


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) collapsed to one space: a task in a prompt takes one line."""
    return re.sub(r"\s+", " ", text).strip()


def clean_instruction(text: str) -> str:
    """One line, no trailing colon: how both originals put a task into a numbered prompt list."""
    return one_line(text).rstrip(":")


@dataclass(frozen=True)
class PromptTask:
    """A task shown in a prompt: where it came from (seed or pool id) and its text."""

    id: str
    instruction: str
    input: str = ""
    output: str = ""


def sample_self_instruct(
    rng: random.Random,
    seeds: Sequence[SeedTask],
    pool: Sequence[MachineTask],
    total: int = 8,
    machine: int = 2,
) -> list[PromptTask]:
    """`machine` tasks from the pool (fewer while it is small), the rest from the seeds, shuffled.

    The calls on `rng` happen in the original's order (pool sample, seed sample, shuffle), so a run
    is reproducible from its seed and the RNG state saved after each round.
    """
    picked = [PromptTask(t.id, t.instruction) for t in rng.sample(list(pool), min(machine, len(pool)))]
    picked += [PromptTask(t.id, t.instruction) for t in rng.sample(list(seeds), total - len(picked))]
    rng.shuffle(picked)
    return picked


def sample_alpaca(rng: random.Random, seeds: Sequence[SeedTask], total: int = 3) -> list[PromptTask]:
    """Alpaca prompts show seed tasks only, each with its first instance."""
    return [
        PromptTask(t.id, t.instruction, t.instances[0].input, t.instances[0].output)
        for t in rng.sample(list(seeds), total)
    ]


def self_instruct_prompt(header: str, tasks: Sequence[PromptTask]) -> str:
    """Header, the tasks as a numbered list on the next lines, and the open next number to continue."""
    lines = [header.rstrip()]
    lines += [f"{index}. {clean_instruction(task.instruction)}" for index, task in enumerate(tasks, start=1)]
    lines.append(f"{len(tasks) + 1}.")
    return "\n".join(lines)


def _alpaca_item(index: int, task: PromptTask) -> str:
    """One `###` item; inputs and outputs are shown stripped, as the reply parser reads them back."""
    given = task.input.strip() or NO_INPUT
    return (
        f"###\n{index}. Instruction: {clean_instruction(task.instruction)}\n"
        f"{index}. Input:\n{given}\n{index}. Output:\n{task.output.strip()}\n"
    )


def alpaca_prompt(header: str, tasks: Sequence[PromptTask]) -> str:
    """Alpaca's layout: the header, a blank line, `###`-separated numbered triples, then an open item."""
    items = "".join(_alpaca_item(index, task) for index, task in enumerate(tasks, start=1))
    return f"{header.rstrip()}\n\n{items}###\n{len(tasks) + 1}. Instruction:"


def few_shot_prompt(template: str, instruction: str, after: str) -> str:
    """The template up to the new task's label, the instruction on the label's line, then `after`.

    Every example in the template reads `Task: <instruction>` on one line; the new task is written the
    same way, whatever whitespace the template file ends with.
    """
    return f"{template.rstrip()} {one_line(instruction)}{after}"


def classify_prompt(template: str, instruction: str) -> str:
    """`Task: <instruction>` then the question, which the examples answer with ` Yes` or ` No`."""
    return few_shot_prompt(template, instruction, CLASSIFY_SUFFIX)


def instances_prompt(template: str, instruction: str) -> str:
    """`Task: <instruction>` and a new line, where each example's instances start."""
    return few_shot_prompt(template, instruction, "\n")


EVOLVE_LABELS = {"breadth": ("Starting task:", "New task:")}
"""The labels around the parent task and the open rewrite; every in-depth operation uses the default."""
EVOLVE_DEFAULT_LABELS = ("Original task:", "Rewritten task:")
ANSWER_SUFFIX = "\n\n### Response:\n"


def evolve_prompt(template: str, operation: str, parent: str) -> str:
    """How to rewrite, the parent task under its label, and the open label the rewrite follows."""
    given, open_label = EVOLVE_LABELS.get(operation, EVOLVE_DEFAULT_LABELS)
    return f"{template.rstrip()}\n\n{given}\n{parent.strip()}\n\n{open_label}"


def answer_prompt(template: str, task: str, style: PromptStyle) -> str:
    """A task to answer: in chat style the task alone; in completion style inside the `answer` template."""
    if style == "chat":
        return task.strip()
    return f"{template.rstrip()}\n{task.strip()}{ANSWER_SUFFIX}"


def request_seed(run_seed: int, round_no: int, stage: str, index: int | str) -> int:
    """A sampling seed per request from (run seed, round, stage, index): stable cache keys, reproducible draws.

    `index` is the request's place in its round (an opening prompt's number, a candidate's key)."""
    digest = hashlib.sha256(f"{run_seed}:{round_no}:{stage}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def make_request(text: str, style: PromptStyle, decoding: Decoding, seed: int, **changes: object) -> Request:
    """A teacher request in the run's prompt style; `changes` adjust the decoding (e.g. max_tokens)."""
    params = SamplingParams(**{**decoding.model_dump(), **changes, "seed": seed})
    if style == "chat":
        return Request(messages=[{"role": "user", "content": text}], params=params)
    return Request(prompt=text, params=params)
