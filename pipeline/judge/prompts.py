"""The judge's prompts and the JSON schemas its answers are forced into.

A template is plain text with `$name` placeholders (`string.Template`, so the JSON examples in it
need no escaping). Its version, recorded on every judgment, hashes the template text together with
the schema: changing either makes a new prompt version, and a re-judge with it scores every task
again. Fields are shown whole unless the prompt would not fit the judge's context (`judge/context.py`);
then the longest are clipped, marked as clipped by us, and a note after them says such a cut is no
defect (only then: the bundled templates are unchanged, so are their versions).
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.core.errors import UserError
from pipeline.judge.config import JudgeConfig
from pipeline.judge.context import DEFAULT_CONTEXT_TOKENS, field_budget, field_cap
from pipeline.run.schemas import MachineTask
from pipeline.teachers.base import Request, SamplingParams

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
Kind = Literal["task", "pairwise"]

REASON_CHARS = 400
"""The reason is one sentence: held to it by the schema, a small judge that loops in its reason (the bundled
135M model in float32 did, past 1,024 tokens) still ends its JSON with a verdict."""

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": REASON_CHARS},
        "valid_instruction": {"type": "boolean"},
        "appropriate_input": {"type": "boolean"},
        "correct_output": {"type": "boolean"},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["reason", "valid_instruction", "appropriate_input", "correct_output", "score"],
    "additionalProperties": False,
}
"""The reason comes first so that a judge states its case before it gives the verdict."""

PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": REASON_CHARS},
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
    },
    "required": ["reason", "winner"],
    "additionalProperties": False,
}

PLACEHOLDERS: dict[Kind, tuple[str, ...]] = {
    "task": ("instruction", "instances"),
    "pairwise": ("instruction", "input", "answer_a", "answer_b"),
}
SCHEMAS: dict[Kind, dict[str, Any]] = {"task": TASK_SCHEMA, "pairwise": PAIRWISE_SCHEMA}
NO_INPUT = "(none)"
CLIPPED = " [... clipped by selfinstruct to fit the judge's context]"
"""Marks a field we shortened."""
CLIP_NOTE = (
    'Note: a field ending in "[... clipped by selfinstruct to fit the judge\'s context]" was shortened by '
    "us, not by its writer, so that the prompt fits: judge the part shown, and do not count that cut as "
    "a defect or as cut off."
)
"""Added to a prompt only where a field was clipped (a small judge shown it needlessly loses its way)."""
INSTANCE_FRAME_CHARS = 40
"""`Instance k`, `Input:`, `Output:` and the blank lines around one instance."""


@dataclass(frozen=True)
class JudgeTemplate:
    kind: Kind
    text: str
    source: str

    @property
    def schema(self) -> dict[str, Any]:
        return SCHEMAS[self.kind]

    @property
    def version(self) -> str:
        blob = self.text + "\n" + json.dumps(self.schema, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]

    def render(self, **fields: str) -> str:
        return string.Template(self.text).substitute(fields)


def load_template(kind: Kind, path: str | Path | None = None) -> JudgeTemplate:
    """The bundled template of `kind`, or the user's file, checked for its placeholders."""
    source = Path(path) if path is not None else TEMPLATE_DIR / f"{kind}.txt"
    if not source.is_file():
        raise UserError(f"{source}: no such judge template")
    text = source.read_text(encoding="utf-8")
    template = string.Template(text)
    found = {m.group("named") or m.group("braced") for m in template.pattern.finditer(text)} - {None}
    needed = set(PLACEHOLDERS[kind])
    if needed - found or found - needed:
        raise UserError(
            f"{source}: a {kind} judge template needs exactly the placeholders "
            f"{', '.join('$' + p for p in PLACEHOLDERS[kind])}"
            + (f"; missing {', '.join(sorted(needed - found))}" if needed - found else "")
            + (f"; unknown {', '.join(sorted(found - needed))}" if found - needed else "")
            + " (write $$ for a literal $)"
        )
    return JudgeTemplate(kind, text, str(source))


def judge_settings(config: JudgeConfig) -> dict[str, Any]:
    """Every setting besides the model and the template that can change a verdict: recorded on each
    judgment, and a change re-scores (`pipeline.judge.runner`)."""
    return {
        "decoding": config.decoding.model_dump(mode="json"),
        "seed": config.seed,
        "context_tokens": config.context_tokens,
        "max_field_chars": config.max_field_chars,
    }


def field_limit(
    template: JudgeTemplate, fields: list[str], frame_chars: int, config: JudgeConfig
) -> int | None:
    """The length past which a field is clipped in this prompt; None when every field fits whole."""
    context = config.context_tokens or DEFAULT_CONTEXT_TOKENS
    budget = field_budget(context, config.decoding.max_tokens, len(template.text) + frame_chars)
    cap = field_cap([len(f.strip()) for f in fields], budget, len(CLIPPED))
    if config.max_field_chars is None:
        return cap
    return config.max_field_chars if cap is None else min(cap, config.max_field_chars)


def clip(text: str, limit: int | None) -> str:
    text = text.strip()
    return text if limit is None or len(text) <= limit else text[:limit].rstrip() + CLIPPED


def render_instances(task: MachineTask, limit: int | None) -> str:
    blocks = []
    for k, instance in enumerate(task.instances, start=1):
        given = clip(instance.input, limit) if instance.input.strip() else NO_INPUT
        blocks.append(f"Instance {k}\nInput: {given}\nOutput: {clip(instance.output, limit)}")
    return "\n\n".join(blocks)


def _request(text: str, template: JudgeTemplate, config: JudgeConfig) -> Request:
    params = SamplingParams(**config.decoding.model_dump(), seed=config.seed, json_schema=template.schema)
    return Request(messages=[{"role": "user", "content": text}], params=params)


def task_request(template: JudgeTemplate, task: MachineTask, config: JudgeConfig) -> Request:
    """One chat request asking the judge the paper's three questions about a whole task."""
    fields = [task.instruction, *(f for i in task.instances for f in (i.input, i.output))]
    limit = field_limit(template, fields, INSTANCE_FRAME_CHARS * len(task.instances) + len(CLIP_NOTE), config)
    instances = render_instances(task, limit)
    clipped = limit is not None and any(len(f.strip()) > limit for f in fields)
    text = template.render(
        instruction=clip(task.instruction, limit),
        instances=f"{instances}\n\n{CLIP_NOTE}" if clipped else instances,
    )
    return _request(text, template, config)


def pairwise_request(
    template: JudgeTemplate, instruction: str, given: str, answer_a: str, answer_b: str, config: JudgeConfig
) -> Request:
    """One chat request asking which of two answers to a request is better."""
    fields = [instruction, given, answer_a, answer_b]
    limit = field_limit(template, fields, len(CLIP_NOTE), config)
    clipped = limit is not None and any(len(f.strip()) > limit for f in fields)
    text = template.render(
        instruction=clip(instruction, limit),
        input=clip(given, limit) if given.strip() else NO_INPUT,
        answer_a=clip(answer_a, limit) or "(empty answer)",
        answer_b=(clip(answer_b, limit) or "(empty answer)") + (f"\n\n{CLIP_NOTE}" if clipped else ""),
    )
    return _request(text, template, config)
