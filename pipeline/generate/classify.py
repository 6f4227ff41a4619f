"""Is a new instruction a classification task? Self-Instruct asks the teacher, few-shot, at temperature 0.

The answer decides how its instances are generated: output-first (the labels, then an input for
each) for classification tasks, input-first otherwise. Like identify_clf_or_not.py, anything other
than a clear "yes" counts as "no"; we also keep track of the unclear answers so a report can show
how often the teacher failed to answer the question at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

from pipeline.generate.config import Decoding, PromptStyle
from pipeline.generate.prompts import classify_prompt, make_request, request_seed
from pipeline.teachers.base import Request

_FIRST_WORD = re.compile(r"[A-Za-z]+")


class Label(str, Enum):
    YES = "yes"
    NO = "no"
    UNCLEAR = "unclear"

    @property
    def is_classification(self) -> bool:
        return self is Label.YES


def parse_label(reply: str | None) -> Label:
    """The first word of the reply, case-insensitive: yes, no, or neither (never raises)."""
    match = _FIRST_WORD.search(reply or "")
    if match is None:
        return Label.UNCLEAR
    word = match.group(0).lower()
    if word == "yes":
        return Label.YES
    if word == "no":
        return Label.NO
    return Label.UNCLEAR


def classification_requests(
    instructions: Sequence[str],
    template: str,
    style: PromptStyle,
    decoding: Decoding,
    run_seed: int,
    round_no: int,
) -> list[Request]:
    """One yes/no request per instruction, each with its own stable seed."""
    return [
        make_request(
            classify_prompt(template, text), style, decoding, request_seed(run_seed, round_no, "classify", k)
        )
        for k, text in enumerate(instructions)
    ]
