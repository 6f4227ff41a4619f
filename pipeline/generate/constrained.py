"""Whether a run's teacher requests are held to their reply formats (`decoding.constrained`).

Decided once per run, before its first request, and kept in state.json: a resumed run sends exactly
the requests the first invocation did (a constrained request and a free one have different cache
keys), and summary.json and the report say which decoding ran and why. The decision holds for the
servers it was made on: a resumed run whose base URLs changed decides again (another server may
ignore or refuse the field), and so does one whose state predates recording them.

- `off`: never constrain.
- `on`: constrain, or stop with an error if the teacher cannot.
- `auto`: constrain where the teacher can, else decode freely with one warning. The in-process vLLM
  engine always can; an HTTP server is asked one small test request that only a server honouring
  vLLM's `structured_outputs` field answers as asked (`Teacher.probe_structured`, a grammar like the
  run's). A server that refuses the field (OpenAI: HTTP 400 "Unrecognized request argument"), refuses
  grammars (vLLM on outlines: HTTP 400 "... does not support grammar specifications") or ignores the
  field falls back.
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
    setting: str,
    teacher: Teacher,
    *,
    chat: bool,
    saved: ConstrainedDecoding | None = None,
    base_urls: list[str] | None = None,
) -> ConstrainedDecoding:
    """The run's decision: the saved one when the setting and the servers are unchanged, else decided
    (and probed) now."""
    urls = list(base_urls or [])
    if saved is not None and saved.setting == setting and (setting == "off" or saved.base_urls == urls):
        return saved
    decided = _decide(setting, teacher, chat=chat)
    return decided if setting == "off" else decided.model_copy(update={"base_urls": urls})


def _decide(setting: str, teacher: Teacher, *, chat: bool) -> ConstrainedDecoding:
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
        stacklevel=3,
    )
    return ConstrainedDecoding(setting=setting, applied=False, reason=why)
