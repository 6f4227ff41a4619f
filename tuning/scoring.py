"""Scoring answers: ROUGE-L against the reference, and whether the answer ended cleanly.

An answer ends cleanly when the model stopped by itself (vLLM's finish_reason "stop": it emitted
EOS) and did not fall into runaway repetition, which is what a model that never learned to stop
does until it hits the length cap. Repetition is a simple, explainable test: some run of
`n` words (lower-cased, split on whitespace) occurs `times` times or more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import mean
from typing import Any

from pipeline.quality.rouge import rouge_l


def repeated_ngram(text: str, n: int = 4, times: int = 4) -> str | None:
    """The first run of `n` words found `times` times or more, or None."""
    words = text.lower().split()
    counts: Counter[tuple[str, ...]] = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    for gram, count in counts.items():
        if count >= times:
            return " ".join(gram)
    return None


def score_answer(
    answer: str, finish_reason: str | None, reference: str, n: int = 4, times: int = 4
) -> dict[str, Any]:
    """Per-answer figures: ROUGE-L F (reference as target), stop reason, repetition, clean end."""
    repeat = repeated_ngram(answer, n, times)
    return {
        "rouge_l": rouge_l(reference, answer),
        "finish_reason": finish_reason,
        "repeated": repeat,
        "clean_end": finish_reason == "stop" and repeat is None,
    }


def summarize(scores: Sequence[dict[str, Any]], token_counts: Sequence[int]) -> dict[str, Any]:
    """Averages over a model's answers."""
    if not scores:
        return {"answers": 0}
    return {
        "answers": len(scores),
        "rouge_l": round(mean(s["rouge_l"] for s in scores), 4),
        "clean_end": round(sum(1 for s in scores if s["clean_end"]) / len(scores), 4),
        "stopped": round(sum(1 for s in scores if s["finish_reason"] == "stop") / len(scores), 4),
        "repetitive": round(sum(1 for s in scores if s["repeated"]) / len(scores), 4),
        "mean_answer_tokens": round(mean(token_counts), 1) if token_counts else 0.0,
    }
