"""The records that flow through the pipeline, as pydantic models.

A seed task follows the Self-Instruct seed format exactly, so the paper's own file loads unchanged.
A machine task is one complete, kept record of `machine_tasks.jsonl`; a rejection is one line of
`rejected.jsonl`. Every later stage (export, report, training) reads these and nothing else.
"""

from __future__ import annotations

from typing import Any, Literal

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
    """Which model answered: enough to tell two teachers apart in a record and in the cache key.

    `dtype` is the precision the engine computes in (bf16 and fp32 give different completions);
    "" where we cannot know it (a remote server decides). `dtype_reason` says why it was chosen; it
    is shown, not compared.
    """

    backend: str
    model: str
    fingerprint: str = ""
    dtype: str = ""
    dtype_reason: str = ""

    def key(self) -> dict[str, str]:
        """The fields that decide an answer: what a cache key hashes and a resumed run must match.

        An unknown dtype adds nothing, so identities without one keep the keys they always had.
        """
        out = {"backend": self.backend, "model": self.model, "fingerprint": self.fingerprint}
        if self.dtype:
            out["dtype"] = self.dtype
        return out

    def differences(self, new: TeacherIdentity) -> list[str]:
        """`teacher.<field>: old -> new` lines for the deciding fields on which `new` differs.

        A dtype recorded by neither side, or only by `new` (a run from before dtypes were
        recorded), is not a difference: there is nothing to compare it with.
        """
        old_key, new_key = self.key(), new.key()
        if "dtype" not in old_key:
            new_key.pop("dtype", None)
        out = []
        for field in sorted(set(old_key) | set(new_key)):
            before, after = old_key.get(field, "<unset>"), new_key.get(field, "<unset>")
            if before != after:
                why = f" ({new.dtype_reason})" if field == "dtype" and new.dtype_reason else ""
                out.append(f"teacher.{field}: {before!r} -> {after!r}{why}")
        return out


class ConstrainedDecoding(BaseModel):
    """Whether a run's replies were held to their recipe's layout (`decoding.constrained`), and why.

    Resolved once per run before its first request and kept in state.json, so a resumed run sends
    exactly the requests (and cache keys) the first invocation did; summary.json and the report show it.
    """

    model_config = ConfigDict(extra="forbid")

    setting: Literal["auto", "on", "off"]
    applied: bool
    reason: str
    base_urls: list[str] | None = Field(None, exclude_if=lambda value: value is None)
    """The servers the decision was made for (an HTTP teacher's base URLs, [] in-process); a resumed
    run pointed elsewhere decides again. None in states written before it was recorded."""

    def describe(self) -> str:
        """One line for the summary table and the report."""
        state = "constrained to the reply layout" if self.applied else "free"
        return f"{state} (decoding.constrained: {self.setting}; {self.reason})"


class Evolution(BaseModel):
    """Where an evol-instruct task came from: its parent's id (a seed, a task of this run or of the
    `--from` run), the operation applied, and how many evolutions separate it from an original task."""

    model_config = ConfigDict(extra="forbid")

    parent: str
    operation: str
    depth: int = Field(ge=1)


def _unset(value: object) -> bool:
    return value is None


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
    # Only when avg_similarity was estimated on a sample of the index (dedup.stats_sample), so exact
    # records keep their shape and older runs read unchanged.
    avg_similarity_se: float | None = Field(
        None, exclude_if=_unset, description="standard error of a sampled avg_similarity"
    )
    avg_similarity_sample: int | None = Field(
        None, exclude_if=_unset, description="how many index entries a sampled avg_similarity averages"
    )
    created_at: float = 0.0
    # Written only by the methods that have them, so other methods' records keep their exact shape.
    evolution: Evolution | None = Field(None, exclude_if=_unset, description="evol-instruct's lineage")
    conversation: list[dict[str, str]] | None = Field(
        None,
        exclude_if=_unset,
        description="magpie: every turn as chat messages (user, assistant, ...); the first pair is "
        "`instruction` and the instance's output",
    )


class Rejection(BaseModel):
    """A candidate that did not make it, with every reason code; nothing is dropped silently."""

    round: int
    stage: str = Field(description="parse | instruction | instance | classify | dedup")
    reasons: list[str] = Field(min_length=1)
    instruction: str = ""
    candidate: dict[str, Any] = Field(default_factory=dict)
