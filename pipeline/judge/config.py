"""The judge's settings, under `judge:` in a run config (and `evaluate.judge:` for pairwise evaluation).

The judge is a teacher like any other (`TeacherConfig`): the bundled model in-process by default, or
any OpenAI-compatible endpoint. Decoding is greedy with a fixed seed so that a verdict is reproducible
and the request cache answers a rerun.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pipeline.teachers.base import DecodingParams
from pipeline.teachers.config import TeacherConfig


class JudgeDecoding(DecodingParams):
    """Greedy, enough tokens for one sentence and four fields of JSON."""

    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(256, ge=16)


class JudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="generate: judge each round's new tasks as it commits")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="the judge model")
    decoding: JudgeDecoding = Field(default_factory=JudgeDecoding)
    seed: int = Field(0, description="sampling seed of every judge request")
    batch_size: int = Field(64, ge=1, description="tasks per judged (and durably recorded) batch")
    template: str | None = Field(None, description="your own task-judging template; None = the bundled one")
    pairwise_template: str | None = Field(
        None, description="your own pairwise template (evaluate --judge); None = the bundled one"
    )
    max_failures_in_a_row: int = Field(
        3,
        ge=1,
        description="stop asking a judge after this many requests in a row failed on its side "
        "(no answer, 5xx after the retries); what was answered is kept",
    )
    context_tokens: int | None = Field(
        None,
        ge=256,
        description="the judge's context length in tokens; None: the engine's max_model_len (or the "
        "model's), what the server's /models reports, else 8192. Fields are clipped only past it",
    )
    max_field_chars: int | None = Field(
        None, ge=50, description="an extra cap on each instruction, input and output; None: only the context"
    )


def judge_teacher_config(config: JudgeConfig) -> TeacherConfig:
    """The judge's teacher settings as it is built: unless set, an HTTP judge stops a batch after as
    many failed attempts in a row as one request may make, whichever requests they were."""
    teacher = config.teacher
    if teacher.max_failed_attempts_in_a_row is not None:
        return teacher
    return teacher.model_copy(update={"max_failed_attempts_in_a_row": teacher.max_retries + 1})


class JudgeSection(BaseModel):
    """The `judge:` section of any config file (a generate config, say); the rest is not read here."""

    model_config = ConfigDict(extra="ignore")

    judge: JudgeConfig = Field(default_factory=JudgeConfig)
