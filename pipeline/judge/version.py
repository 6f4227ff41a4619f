"""A judge's version: everything that decides a verdict besides the task itself.

The model (with the dtype that ran), the prompt version (template and schema) and the settings of
`pipeline.judge.prompts.judge_settings` (decoding, seed, context and field limits). Two judgments
with the same version are answers of the same judge; any difference makes `judge` re-score and say
which setting changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.run.judgments import Judgment
from pipeline.run.schemas import TeacherIdentity


@dataclass(frozen=True)
class JudgeVersion:
    """Everything that decides a verdict besides the task: the model (with the dtype that ran), the
    prompt version (template and schema) and the settings of `judge_settings`."""

    judge: TeacherIdentity
    prompt_version: str
    settings: dict[str, Any]

    def differences(self, judgment: Judgment) -> list[str]:
        """What differs between the judge that wrote `judgment` and this one ([] = the same judge).

        Settings a line does not record (written before they were) are not compared, like a dtype.
        """
        out = judgment.judge.differences(self.judge)
        if judgment.prompt_version != self.prompt_version:
            out.append(f"judge prompt version: {judgment.prompt_version} -> {self.prompt_version}")
        if judgment.settings:
            old, new = _flat(judgment.settings), _flat(self.settings)
            for key in sorted(set(old) | set(new)):
                if old.get(key, "<unset>") != new.get(key, "<unset>"):
                    out.append(f"judge.{key}: {old.get(key, '<unset>')!r} -> {new.get(key, '<unset>')!r}")
        return out


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def answered_by(history: list[Judgment], version: JudgeVersion) -> set[tuple[str, str]]:
    """(task id, task digest) of every task this judge version answered (scored or unscored)."""
    return {
        (j.task_id, j.task_digest) for j in history if j.status != "failed" and not version.differences(j)
    }
