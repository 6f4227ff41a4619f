"""Figures of a seed set for `selfinstruct seeds validate`: size, task kinds, lengths and the closest pair."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.quality.rouge import max_pairwise
from pipeline.run.schemas import SeedTask


@dataclass(frozen=True)
class SeedStats:
    count: int
    classification: int
    with_input_share: float
    min_words: int
    max_words: int
    instances: int
    max_pairwise_rouge: float
    max_pair: tuple[str, str]

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "classification": self.classification,
            "with_input_share": round(self.with_input_share, 4),
            "instruction_words": [self.min_words, self.max_words],
            "instances": self.instances,
            "max_pairwise_rougeL": round(self.max_pairwise_rouge, 4),
            "max_pair": list(self.max_pair),
        }


def seed_stats(tasks: list[SeedTask], tokenizer: str = "rouge") -> SeedStats:
    """The figures `seeds validate` prints; the max pairwise ROUGE-L uses the exact dedup scorer."""
    words = [len(t.instruction.split()) for t in tasks]
    score, i, j = max_pairwise([t.instruction for t in tasks], tokenizer=tokenizer)
    pair = (tasks[i].id, tasks[j].id) if i >= 0 else ("", "")
    return SeedStats(
        count=len(tasks),
        classification=sum(t.is_classification for t in tasks),
        with_input_share=sum(any(x.input.strip() for x in t.instances) for t in tasks) / len(tasks),
        min_words=min(words),
        max_words=max(words),
        instances=sum(len(t.instances) for t in tasks),
        max_pairwise_rouge=score,
        max_pair=pair,
    )
