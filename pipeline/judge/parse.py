"""Reading a judge's reply: strict JSON first, then a tolerant reading for servers that ignore the schema.

The tolerant reading finds a JSON object inside prose or a code fence, matches keys without regard
to case, and reads "yes"/"no"/"true"/"false" strings as booleans and "4" or "4/5" as a score. It never
guesses: a reply with no object, a missing field, a value it cannot read or a score outside 1-5 is
`Unusable`, with a code and what was wrong, and the task stays unscored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

Parsed = Literal["json", "tolerant"]
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_SCORE_TEXT = re.compile(r"^\s*([+-]?\d+)\s*(?:/\s*5|out of 5)?\s*\.?\s*$", re.IGNORECASE)
_YES = {"yes", "true", "y"}
_NO = {"no", "false", "n"}


@dataclass(frozen=True)
class Unusable:
    """A reply that does not give a verdict: `code` for counting, `detail` for people."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True)
class TaskVerdict:
    valid_instruction: bool
    appropriate_input: bool
    correct_output: bool
    score: int
    reason: str
    parsed: Parsed


@dataclass(frozen=True)
class Preference:
    """Which of two answers the judge preferred: "A", "B" or "tie"."""

    winner: str
    reason: str
    parsed: Parsed


class _Bad(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.unusable = Unusable(code, detail)


def find_object(text: str) -> tuple[dict[str, Any], Parsed] | None:
    """The reply's JSON object: the whole text, else the first object in a code fence or in the prose."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        return whole, "json"
    decoder = json.JSONDecoder()
    for source in [*_FENCE.findall(text), text]:
        for match in re.finditer(r"\{", source):
            try:
                obj, _ = decoder.raw_decode(source, match.start())
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj, "tolerant"
    return None


def _lookup(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    folded = {str(k).strip().casefold(): v for k, v in obj.items()}
    missing = [f for f in fields if f not in obj and f.casefold() not in folded]
    if missing:
        raise _Bad("missing_fields", ", ".join(missing))
    return {f: obj[f] if f in obj else folded[f.casefold()] for f in fields}


def _boolean(name: str, value: Any) -> tuple[bool, bool]:
    """(value, was it a real JSON boolean)."""
    if isinstance(value, bool):
        return value, True
    if isinstance(value, str):
        word = value.strip().strip(".!").casefold()
        if word in _YES:
            return True, False
        if word in _NO:
            return False, False
    raise _Bad("bad_field", f"{name} is {json.dumps(value)[:60]}, not true/false")


def _score(value: Any) -> tuple[int, bool]:
    native = isinstance(value, int) and not isinstance(value, bool)
    if native or (isinstance(value, float) and value.is_integer()):
        number = int(value)
    elif isinstance(value, str) and (m := _SCORE_TEXT.match(value)):
        number = int(m.group(1))
    else:
        raise _Bad("bad_field", f"score is {json.dumps(value)[:60]}, not a whole number")
    if not 1 <= number <= 5:
        raise _Bad("score_out_of_range", f"score {number} is outside 1-5")
    return number, native


def _reason(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("bad_field", f"reason is {json.dumps(value)[:60]}, not text")
    return " ".join(value.split())


def _object(text: str, finish_reason: str | None) -> tuple[dict[str, Any], Parsed]:
    found = find_object(text)
    if found is None:
        if finish_reason == "length":
            raise _Bad("truncated", "the reply was cut off by the token limit before its JSON was complete")
        if not text.strip():
            raise _Bad("empty_reply", "the judge returned no text")
        raise _Bad("not_json", "no JSON object in the reply")
    return found


def read_task_verdict(text: str, finish_reason: str | None = None) -> TaskVerdict | Unusable:
    """The three answers, the score and the reason from a task-judging reply, or why there are none."""
    try:
        obj, parsed = _object(text, finish_reason)
        values = _lookup(obj, ("valid_instruction", "appropriate_input", "correct_output", "score", "reason"))
        answers = {
            q: _boolean(q, values[q]) for q in ("valid_instruction", "appropriate_input", "correct_output")
        }
        score, native = _score(values["score"])
        reason = _reason(values["reason"])
    except _Bad as bad:
        return bad.unusable
    strict = (
        parsed == "json"
        and native
        and all(ok for _, ok in answers.values())
        and set(obj)
        == {
            "valid_instruction",
            "appropriate_input",
            "correct_output",
            "score",
            "reason",
        }
    )
    return TaskVerdict(
        valid_instruction=answers["valid_instruction"][0],
        appropriate_input=answers["appropriate_input"][0],
        correct_output=answers["correct_output"][0],
        score=score,
        reason=reason,
        parsed="json" if strict else "tolerant",
    )


def read_preference(text: str, finish_reason: str | None = None) -> Preference | Unusable:
    """ "A", "B" or "tie" from a pairwise reply (also "Answer A", "a", "Tie."), or why there is none."""
    try:
        obj, parsed = _object(text, finish_reason)
        values = _lookup(obj, ("winner", "reason"))
        reason = _reason(values["reason"])
    except _Bad as bad:
        return bad.unusable
    raw = values["winner"]
    word = raw.strip().strip(".!").casefold() if isinstance(raw, str) else None
    if word is not None and word.startswith("answer "):
        word = word[len("answer ") :]
    winner = {"a": "A", "b": "B", "tie": "tie"}.get(word or "")
    if winner is None:
        return Unusable("bad_field", f"winner is {json.dumps(raw)[:60]}, not A, B or tie")
    strict = parsed == "json" and raw == winner and set(obj) == {"winner", "reason"}
    return Preference(winner=winner, reason=reason, parsed="json" if strict else "tolerant")
