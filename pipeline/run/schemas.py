"""The records that flow through the pipeline, as pydantic models.

A seed task follows the Self-Instruct seed format exactly, so the paper's own file loads unchanged.
A machine task is one complete, kept record of `machine_tasks.jsonl`; a rejection is one line of
`rejected.jsonl`. Every later stage (export, report, training) reads these and nothing else.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Instance(BaseModel):
    """One input/output pair of a task. An empty input means the instruction stands alone."""

    model_config = ConfigDict(extra="forbid")

    input: str = ""
    output: str


class SeedTask(BaseModel):
    """A human-written task in the Self-Instruct seed format."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    instruction: str
    instances: list[Instance] = Field(min_length=1)
    is_classification: bool

    @field_validator("instruction")
    @classmethod
    def _instruction_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("instruction is empty")
        return value


class TeacherIdentity(BaseModel):
    """Which model answered: enough to tell two teachers apart in a record and in the cache key."""

    backend: str
    model: str
    fingerprint: str = ""


class MachineTask(BaseModel):
    """A kept, machine-generated task: one complete line of `machine_tasks.jsonl`."""

    id: str
    instruction: str
    instances: list[Instance]
    is_classification: bool
    round: int
    method: str
    teacher: TeacherIdentity
    prompt_ids: list[str] = Field(default_factory=list, description="seed/pool task ids shown in its prompt")
    most_similar: dict[str, float] = Field(default_factory=dict, description="top instructions by ROUGE-L")
    avg_similarity: float = 0.0
    created_at: float = 0.0


class Rejection(BaseModel):
    """A candidate that did not make it, with every reason code; nothing is dropped silently."""

    round: int
    stage: str = Field(description="parse | instruction | instance | classify | dedup")
    reasons: list[str] = Field(min_length=1)
    instruction: str = ""
    candidate: dict[str, Any] = Field(default_factory=dict)
