"""Building teacher prompts for both recipes, in completion or chat style.

Each template under `pipeline/generate/templates/` (or the user's file named in `templates:`) is the fixed
prefix of its prompt; the code appends the variable part exactly as the originals do:

- `instructions` / `instructions_clf` (self-instruct): header; then `1. <task>` ... `8. <task>` and
  a final `9.` that the teacher continues (`encode_prompt` in bootstrap_instructions.py).
- `classify`: few-shot yes/no examples ending in `Task:`; then ` <instruction>\\nIs it classification?`.
- `instances_clf` (output-first) / `instances_gen` (input-first): few-shot examples ending in
  `Task:`; then ` <instruction>\\n`.
- `alpaca`: the requirements, ending in `List of 20 tasks:\\n`; then a blank line and `###`-separated
  items `k. Instruction:` / `k. Input:` / `k. Output:`, and an open `4. Instruction:`.

In chat style the same text is sent as a single user message.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.generate.config import Decoding, PromptStyle, TemplatePaths
from pipeline.generate.parsing import NO_INPUT
from pipeline.run.schemas import MachineTask, SeedTask
from pipeline.teachers.base import Request, SamplingParams

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAMES = ("instructions", "instructions_clf", "classify", "instances_clf", "instances_gen", "alpaca")
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
    """Read the bundled templates, replacing those the config points at a user's file."""
    paths = paths or TemplatePaths()
    texts: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in TEMPLATE_NAMES:
        override = getattr(paths, name)
        path = Path(override) if override else TEMPLATE_DIR / f"{name}.txt"
        if not path.is_file():
            raise UserError(f"templates.{name}: no such template file: {path}")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise UserError(f"templates.{name}: template file is empty: {path}")
        texts[name] = text
        sources[name] = str(path) if override else f"bundled:{name}.txt"
    return Templates(texts=texts, sources=sources)


def clean_instruction(text: str) -> str:
    """One line, no trailing colon: how both originals put a task into a numbered prompt list."""
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


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
    """Header, the tasks as a numbered list, and the open next number for the teacher to continue."""
    lines = [header if header.endswith("\n") else header + "\n"]
    for index, task in enumerate(tasks, start=1):
        lines.append(f"{index}. {clean_instruction(task.instruction)}\n")
    lines.append(f"{len(tasks) + 1}.")
    return "".join(lines)


def alpaca_prompt(header: str, tasks: Sequence[PromptTask]) -> str:
    """Alpaca's layout: `###`-separated numbered instruction/input/output triples, then an open item."""
    out = [header + "\n"]
    for index, task in enumerate(tasks, start=1):
        given = task.input if task.input.strip() else NO_INPUT
        out.append("###\n")
        out.append(f"{index}. Instruction: {clean_instruction(task.instruction)}\n")
        out.append(f"{index}. Input:\n{given}\n")
        out.append(f"{index}. Output:\n{task.output}\n")
    out.append("###\n")
    out.append(f"{len(tasks) + 1}. Instruction:")
    return "".join(out)


def classify_prompt(template: str, instruction: str) -> str:
    return f"{template} {instruction.strip()}{CLASSIFY_SUFFIX}"


def instances_prompt(template: str, instruction: str) -> str:
    return f"{template} {instruction.strip()}\n"


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
