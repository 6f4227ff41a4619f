"""Is a new instruction a classification task? Self-Instruct asks the teacher, few-shot, at temperature 0.

The answer decides how its instances are generated: output-first (the labels, then an input for
each) for classification tasks, input-first otherwise. Like identify_clf_or_not.py, anything other
than a clear "yes" counts as "no"; we also keep track of the unclear answers so a report can show
how often the teacher failed to answer the question at all.
"""

from __future__ import annotations

import re
from enum import Enum

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
