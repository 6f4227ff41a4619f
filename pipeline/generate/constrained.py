"""Whether a run's teacher requests are held to their reply formats (`decoding.constrained`).

Decided once per run, before its first request, and kept in state.json: a resumed run sends exactly
the requests the first invocation did (a constrained request and a free one have different cache
keys), and summary.json and the report say which decoding ran and why.

- `off`: never constrain.
- `on`: constrain, or stop with an error if the teacher cannot.
- `auto`: constrain where the teacher can, else decode freely with one warning. The in-process vLLM
  engine always can; an HTTP server is asked one small test request that only a server honouring
  vLLM's `structured_outputs` field answers as asked (`Teacher.probe_structured`). A server that
  refuses the field (OpenAI: HTTP 400 "Unrecognized request argument") or ignores it falls back.
"""

from __future__ import annotations

import warnings

from pipeline.core.errors import UserError
from pipeline.core.warncapture import PipelineWarning
from pipeline.run.schemas import ConstrainedDecoding
from pipeline.teachers.base import Teacher


class ConstrainedFallbackWarning(PipelineWarning):
    """`decoding.constrained: auto` met a teacher that cannot hold replies to a layout."""


def resolve_constrained(
    setting: str, teacher: Teacher, *, chat: bool, saved: ConstrainedDecoding | None = None
) -> ConstrainedDecoding:
    """The run's decision: the saved one when the setting is unchanged, else decided (and probed) now."""
    if saved is not None and saved.setting == setting:
        return saved
    if setting == "off":
        return ConstrainedDecoding(setting="off", applied=False, reason="decoding.constrained is off")
    backend = teacher.identity.backend
    if teacher.structured_outputs is True:
        return ConstrainedDecoding(setting=setting, applied=True, reason=f"the {backend} backend supports it")
    why = (
        teacher.probe_structured(chat=chat)
        if teacher.structured_outputs is None
        else f"the {backend} backend does not support structured outputs"
    )
    if why is None:
        return ConstrainedDecoding(
            setting=setting, applied=True, reason="the server honoured a structured-outputs test request"
        )
    if setting == "on":
        raise UserError(
            f"decoding.constrained is 'on' but {why}; use 'auto' to fall back to free decoding, or 'off'"
        )
    warnings.warn(
        f"constrained decoding is off for this run: {why}; decoding freely",
        ConstrainedFallbackWarning,
        stacklevel=2,
    )
    return ConstrainedDecoding(setting=setting, applied=False, reason=why)
