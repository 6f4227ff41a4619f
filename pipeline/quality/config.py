"""The quality stage's settings (`filters:` and `dedup:` of a run config), apart from the algorithms.

Loading a config must not import numpy or rapidfuzz: this module needs only pydantic, and
`filters` and `dedup` import their settings from here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Self-Instruct's 13 terms (tasks a text-only model cannot do), then Alpaca's additions.
SELF_INSTRUCT_BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
)
ALPACA_BLACKLIST_ADDITIONS = ("video", "audio", "music", "flowchart", "diagram")

DEFAULT_PLACEHOLDERS = ("N/A", "<nooutput>", "<no output>", "...", "\u2026")
DEFAULT_FILLER = (
    "lorem ipsum",
    "dolor sit amet",
    "consectetur adipiscing",
    "insert text here",
    "your text here",
    "text goes here",
    "placeholder text",
)
DEFAULT_REFUSALS = (
    "as an ai language model",
    "as a language model",
    "as an ai model",
    "as an ai assistant",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i'm sorry, but i can't",
    "i'm sorry, but as an ai",
)


class FilterConfig(BaseModel):
    """Which rules run and with what parameters. Each rule's switch is named after its reason code."""

    model_config = ConfigDict(extra="forbid")

    # instruction rules
    too_short: bool = Field(True, description="reject instructions with fewer than min_words words")
    min_words: int = Field(4, ge=0, description="Self-Instruct drops <= 3 words")
    too_long: bool = Field(True, description="reject instructions with more than max_words words")
    max_words: int = Field(150, ge=1, description="Self-Instruct drops > 150 words")
    blacklisted_word: bool = Field(True, description="reject instructions naming a blacklisted term")
    blacklist: list[str] = Field(
        default_factory=lambda: [*SELF_INSTRUCT_BLACKLIST, *ALPACA_BLACKLIST_ADDITIONS],
        description="whole words/phrases, case-insensitive: things a text model cannot see, draw or open",
    )
    write_a_program: bool = Field(
        True,
        description="reject instructions starting with one of banned_prefixes (Self-Instruct's rule and name)",
    )
    banned_prefixes: list[str] = Field(
        default_factory=lambda: ["Write a program"],
        description="case-insensitive; models pile 'write a program' onto tasks, leaving it unclear what to output",
    )
    starts_with_punctuation: bool = Field(
        True, description="reject instructions starting with ASCII punctuation"
    )
    starts_with_non_ascii: bool = Field(
        True, description="reject instructions starting with a non-ASCII character"
    )
    truncated: bool = Field(
        True, description="reject a reply cut off by the length limit (finish reason 'length')"
    )
    # instance rules
    empty_output: bool = Field(True, description="reject instances whose output is blank")
    output_equals_input: bool = Field(True, description="reject instances that echo their input")
    ends_with_colon: bool = Field(
        True, description="reject an input or output ending with ':' (cut-off generation)"
    )
    placeholder_output: bool = Field(True, description="reject outputs that only stand in for an answer")
    placeholders: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PLACEHOLDERS), description="whole outputs, case-insensitive"
    )
    refusal: bool = Field(True, description="reject outputs that refuse or talk about being an AI")
    refusal_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSALS), description="substrings, case-insensitive"
    )
    output_repeats_instruction: bool = Field(
        True, description="reject an output that restates the instruction (ROUGE-L above repeat_threshold)"
    )
    output_repeats_input: bool = Field(
        True,
        description="reject an output that copies its input: ROUGE-L above repeat_threshold and no word "
        "the input lacks (edits such as grammar fixes add words and are kept)",
    )
    repeat_threshold: float = Field(
        0.85, gt=0.0, le=1.0, description="ROUGE-L F-measure at or above which an output repeats"
    )
    filler_output: bool = Field(True, description="reject outputs containing known filler text")
    filler_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FILLER), description="substrings, case-insensitive"
    )
    duplicate_instance: bool = Field(
        True, description="keep the first of identical (input, output) instances"
    )
    conflicting_outputs: bool = Field(
        True, description="drop every instance of a non-empty input that has different outputs in one task"
    )
    too_many_instances: bool = Field(
        True, description="keep at most max_instances per task, first ones first"
    )
    max_instances: int = Field(5, ge=1, description="Self-Instruct keeps at most 5 instances per task")


SEMANTIC_THRESHOLD = 0.88
"""all-MiniLM-L6-v2 cosine above which two instructions ask for the same thing (bench/semantic_threshold.py)."""


STATS_SAMPLE = 2000
"""Index size past which a kept candidate's mean similarity is estimated on a sample of this many entries."""


class DedupConfig(BaseModel):
    """How novel a candidate must be. Defaults are Self-Instruct's and Alpaca's."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        0.7, ge=0.0, le=1.0, description="reject a candidate whose max ROUGE-L F1 against the index is > this"
    )
    tokenizer: Literal["rouge", "unicode"] = Field(
        "rouge", description='"rouge": rouge-score\'s own (ASCII only); "unicode": any language'
    )
    top_k: int = Field(10, ge=0, description="how many most similar instructions to keep per candidate")
    similarity_stats: bool = Field(
        True,
        description=(
            "compare each kept candidate with the whole index for its exact max_score, top_k most_similar "
            "and avg_similarity (what Self-Instruct records; the mean on a sample past stats_sample "
            "entries); False skips that pass (decisions are the same "
            "and exact either way; a kept candidate's max_score is then the best pair examined, most_similar "
            "empty and avg_similarity 0.0)"
        ),
    )
    # Left out of a resolved config while at their defaults, so runs made before them resume unchanged.
    stats_sample: int = Field(
        STATS_SAMPLE,
        ge=2,
        exclude_if=lambda value: value == STATS_SAMPLE,
        description="with similarity_stats, past this many index entries a kept candidate's avg_similarity "
        "is the mean over a seeded sample of this many entries, recorded with its standard error "
        "(avg_similarity_se) and the sample size (avg_similarity_sample); max_score and most_similar stay "
        "exact. An exact mean costs one ROUGE-L per entry (35-50 ns on 2 cores); past 2,400-3,500 entries "
        "that is more than the decisions spend per kept candidate (about 120 us at 52K lines; "
        "docs/scaling.md)",
    )
    stats_seed: int = Field(
        0, exclude_if=lambda value: value == 0, description="seed of those samples (one draw per index size)"
    )
    # Semantic near-duplicates (pipeline.curate.index). Left out of a resolved config while at their
    # defaults, so runs made before they existed resume unchanged.
    semantic_duplicate: bool = Field(
        False,
        exclude_if=lambda value: value is False,
        description="also reject a candidate whose embedding's cosine similarity to a kept instruction "
        "(seeds, pool, earlier candidates) is above semantic_threshold (the embedder: `embedder:`); "
        "off in the paper-faithful presets, on in configs/curated.yaml",
    )
    semantic_threshold: float = Field(
        SEMANTIC_THRESHOLD,
        gt=0.0,
        le=1.0,
        exclude_if=lambda value: value == SEMANTIC_THRESHOLD,
        description="cosine similarity above which a candidate is a semantic_duplicate",
    )
