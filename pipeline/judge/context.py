"""How much of a task fits in the judge's prompt: its context window, in tokens, turned into characters.

A field is never clipped to an arbitrary length: the judge sees every field whole unless the whole prompt
would not fit its context (`max_model_len` less the reply's `max_tokens`). Only then are the longest
fields shortened, all to the same length (water-filling), each marked as clipped by us, and a note
tells the judge that such a cut is not a defect of the task. Characters stand in for tokens at a
conservative rate (no tokenizer is at hand for a remote judge; English runs about 4 characters a token).
"""

from __future__ import annotations

from pipeline.teachers.config import TeacherConfig

CHARS_PER_TOKEN = 3.0
MARGIN_TOKENS = 64
"""Room for the chat template's own tokens around the prompt."""
MIN_FIELD_CHARS = 50
DEFAULT_CONTEXT_TOKENS = 8192
"""Assumed when nothing says otherwise (a hosted API): smaller than any current instruct model's."""


def judge_context_tokens(config: TeacherConfig) -> int:
    """The judge's context length: the in-process engine's `max_model_len` (or the model's own), what
    a server's /models reports, else DEFAULT_CONTEXT_TOKENS."""
    if config.backend == "vllm":
        from pipeline.core.model import resolve_model
        from pipeline.teachers.engine import context_length

        return context_length(resolve_model(config.model), config.engine.max_model_len)
    from pipeline.teachers.preflight import served_context_tokens

    return served_context_tokens(config) or DEFAULT_CONTEXT_TOKENS


def field_budget(context_tokens: int, max_tokens: int, frame_chars: int) -> int:
    """Characters left for the fields once the template (`frame_chars`) and the reply are counted."""
    room = context_tokens - max_tokens - MARGIN_TOKENS
    return max(0, int(room * CHARS_PER_TOKEN) - frame_chars)


def field_cap(lengths: list[int], budget: int, marker_chars: int) -> int | None:
    """The one length every longer field is cut to so that all fit `budget`; None when all fit whole.

    The largest cap c with sum(min(len, c) + marker for the cut ones) <= budget, found by bisection;
    never below MIN_FIELD_CHARS (a prompt that still does not fit is the server's to refuse).
    """
    if sum(lengths) <= budget:
        return None

    def used(cap: int) -> int:
        return sum(n if n <= cap else cap + marker_chars for n in lengths)

    low, high = 0, max(lengths)
    while low < high:
        mid = (low + high + 1) // 2
        if used(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return max(low, MIN_FIELD_CHARS)
