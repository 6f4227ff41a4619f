"""The settings of a generation run, as one pydantic model read from YAML plus command-line flags.

Defaults reproduce the recipes: Self-Instruct's bootstrap (8 prompt instructions, 2 of them from the
machine pool; temperature 0.7, top_p 0.5, presence penalty 2, 1024 tokens, stop before item 16;
yes/no classification at temperature 0; instances at temperature 0 with presence penalty 1.5) and
Stanford Alpaca's (3 seed tasks per prompt, temperature 1.0, top_p 1.0, 3072 tokens, stop before
item 20). Where the originals ask for `top_p=0` together with `temperature=0` we use `top_p=1.0`:
both mean greedy decoding, and vLLM only accepts top_p in (0, 1].

`decoding.constrained` (default `auto`) holds each reply to the layout its recipe asks for and its
parser reads (`pipeline.generate.formats`): the same prompts, item counts, stop strings and token
limits, with decoding kept to replies that parse.

Settings fall into two kinds. Those that change what a run produces (method, seeds, teacher model,
decoding, filters, dedup, templates, seed, batch size, ...) must stay fixed for the life of a run
directory; `RUN_LENGTH_KEYS` and the other `FREE_KEYS` (how long to run, where the servers are, how
fast to go) may change between invocations. `rundir.config_differences` applies that rule.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.curate.config import EmbedderConfig
from pipeline.judge.config import JudgeConfig
from pipeline.quality.config import DedupConfig, FilterConfig
from pipeline.teachers.base import DecodingParams
from pipeline.teachers.config import TeacherConfig

Method = Literal["self-instruct", "alpaca", "evol-instruct", "magpie"]
PromptStyle = Literal["completion", "chat"]

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float | None:
    """Seconds from `600`, `90s`, `10m`, `1h30m` (or None from `none`/`off`, which lift a budget)."""
    text = text.strip().lower()
    if text in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a duration: {text!r} (write seconds, or e.g. 90s, 10m, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class Decoding(DecodingParams):
    """Sampling settings for one kind of teacher request (the per-request seed is added at run time)."""


class InstructionsDecoding(Decoding):
    """bootstrap_instructions.py: the prompt ends with "9.", so items 9..15 come back at most."""

    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.5, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    presence_penalty: float = 2.0
    stop: list[str] = Field(default_factory=lambda: ["\n\n", "\n16", "16.", "16 ."])


class ClassifyDecoding(Decoding):
    """identify_clf_or_not.py: greedy; three tokens are enough for "Yes"/"No"."""

    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(3, ge=1)
    stop: list[str] = Field(default_factory=lambda: ["\n", "Task"])


class InstancesDecoding(Decoding):
    """generate_instances.py: greedy, presence penalty 1.5, 350 tokens (300 for classification tasks,
    whose prompt is longer); "Example {max_instances + 1}" is added to `stop` at run time."""

    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(350, ge=1)
    presence_penalty: float = 1.5
    stop: list[str] = Field(default_factory=lambda: ["Task:"])


class AlpacaDecoding(Decoding):
    """generate_instruction.py: items 4..19 after three prompt tasks; stop before item 20."""

    max_tokens: int = Field(3072, ge=1)
    stop: list[str] = Field(default_factory=lambda: ["\n20", "20."])


class EvolveDecoding(Decoding):
    """evol-instruct: one rewritten task per request, sampled (WizardLM evolves at temperature 1)."""

    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)


class AnswerDecoding(Decoding):
    """evol-instruct and magpie: the teacher's answer to one task (or one user turn)."""

    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)


class QueryDecoding(Decoding):
    """magpie: a user turn written from the pre-query template alone (Magpie samples at temperature 1)."""

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(128, ge=1)


class DecodingConfig(BaseModel):
    """Decoding per request kind; each defaults to the original recipe's parameters, and a YAML file
    that sets one of them (say `instructions.temperature`) keeps the recipe's values for the rest."""

    model_config = ConfigDict(extra="forbid")

    instructions: InstructionsDecoding = Field(default_factory=InstructionsDecoding)
    classify: ClassifyDecoding = Field(default_factory=ClassifyDecoding)
    instances: InstancesDecoding = Field(default_factory=InstancesDecoding)
    instances_clf_max_tokens: int = Field(
        300, ge=1, description="max_tokens for output-first (classification) prompts"
    )
    alpaca: AlpacaDecoding = Field(default_factory=AlpacaDecoding)
    evolve: EvolveDecoding = Field(default_factory=EvolveDecoding)
    answer: AnswerDecoding = Field(default_factory=AnswerDecoding)
    query: QueryDecoding = Field(default_factory=QueryDecoding)
    constrained: Literal["auto", "on", "off"] = Field(
        "auto",
        description="hold each reply to its recipe's layout (vLLM structured outputs): auto = where the "
        "backend supports it, else free decoding with a warning; on = required; off = never",
    )


class TemplatePaths(BaseModel):
    """Optional paths of the user's own prompt templates; None means the bundled one of that name.

    Each file is the fixed prefix of its prompt (see `pipeline.generate.prompts` for what is appended).
    """

    model_config = ConfigDict(extra="forbid")

    instructions: str | None = None
    instructions_clf: str | None = None
    classify: str | None = None
    instances_clf: str | None = None
    instances_gen: str | None = None
    alpaca: str | None = None
    evolve_constraints: str | None = None
    evolve_deepen: str | None = None
    evolve_concretize: str | None = None
    evolve_reasoning: str | None = None
    evolve_input: str | None = None
    evolve_breadth: str | None = None
    answer: str | None = None


EvolOperation = Literal["constraints", "deepen", "concretize", "reasoning", "input", "breadth"]
EVOL_OPERATIONS: tuple[str, ...] = ("constraints", "deepen", "concretize", "reasoning", "input", "breadth")
"""WizardLM's five in-depth operations (add constraints, deepening, concretizing, increase reasoning
steps, complicate the input) and in-breadth mutation; each has its template `evolve_<operation>`."""

DEFAULT_COPY_MARKERS = (
    "original task",
    "starting task",
    "rewritten task",
    "new task:",
    "given task",
    "given prompt",
    "rewritten prompt",
    "#rewritten prompt#",
    "#given prompt#",
)


class EvolConfig(BaseModel):
    """evol-instruct: where the pool starts, which operations, and the elimination rules' parameters."""

    model_config = ConfigDict(extra="forbid")

    from_run: str | None = Field(
        None, description="evolve this run's kept tasks instead of the seeds (`--from RUN`)"
    )
    operations: list[EvolOperation] = Field(
        default_factory=lambda: list(EVOL_OPERATIONS), min_length=1, description="drawn uniformly per task"
    )
    min_words: int = Field(5, ge=1, description="evol_too_short: an evolved task needs this many words")
    max_parent_rouge: float = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="evol_near_parent: ROUGE-L with its parent at or above this (the dedup threshold: a near "
        "copy of its parent is named as such)",
    )
    min_new_words: int = Field(
        2, ge=1, description="evol_no_new_information: fewer new content words than this over the parent"
    )
    copy_markers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COPY_MARKERS),
        description="evol_copies_prompt: phrases of the evolution prompt an evolved task must not contain",
    )
    refusal_words: list[str] = Field(
        default_factory=lambda: ["sorry", "cannot", "can't", "unable"],
        description="evol_answer_refused: an answer with one of these and under refusal_max_words words",
    )
    refusal_max_words: int = Field(80, ge=1, description="the paper's 80 words")
    min_content_share: float = Field(
        0.2, ge=0.0, le=1.0, description="evol_answer_empty: share of words that are not stop words"
    )


class MagpieConfig(BaseModel):
    """magpie: turns per conversation, the chat template, and Magpie's three extra filters."""

    model_config = ConfigDict(extra="forbid")

    turns: int = Field(1, ge=1, description="user turns per conversation (`--turns`)")
    chat_template: str | None = Field(
        None,
        description="a tokenizer folder or hub name whose chat template the teacher speaks; None = the "
        "teacher's model (needed for an HTTP teacher whose model name is no local tokenizer)",
    )
    system_prompt: str | None = Field(
        None, description="a system message before the first turn; None = the template's own default"
    )
    language: Literal["english", "any"] = Field(
        "english", description="magpie_language: a query must be in this language (by script and stop words)"
    )
    min_stopword_share: float = Field(
        0.15, ge=0.0, le=1.0, description="english: at least this share of a query's words are stop words"
    )
    min_latin_share: float = Field(
        0.9, ge=0.0, le=1.0, description="english: at least this share of a query's letters are Latin"
    )
    min_query_words: int = Field(5, ge=1, description="magpie_query_too_short: fewer words than this")
    max_repeat_share: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="magpie_repetition: share of a text's word 4-grams that repeat an earlier one",
    )


class GenerateConfig(BaseModel):
    """Everything `selfinstruct generate` needs; `configs/*.yaml` set a subset, flags override them."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        "self-instruct", description="self-instruct (the paper's bootstrap), alpaca, evol-instruct or magpie"
    )
    prompt_style: PromptStyle = Field(
        "completion", description="completion: the teacher continues a raw prompt; chat: one user message"
    )
    seeds: str | None = Field(
        None, description="seed tasks JSONL; None = the project's seeds/seed_tasks.jsonl"
    )
    classification_seeds_only: bool = Field(
        False, description="self-instruct: prompt with classification seeds only (more classification tasks)"
    )
    rounds: int | None = Field(
        None,
        ge=1,
        description="rounds to run in this invocation (each rerun runs this many more); with neither "
        "`rounds`, `until` nor `time_budget`, one round",
    )
    until: int | None = Field(None, ge=1, description="instead of `rounds`: run until this many kept tasks")
    time_budget: float | None = Field(
        None,
        gt=0.0,
        description="wall time for this invocation, in seconds or as a duration (`10m`, `1h30m`, `90s`): "
        "no round starts once it is spent; with `rounds` or `until`, whichever is reached first",
    )
    max_rounds_without_progress: int = Field(
        20, ge=1, description="with `until`: stop after this many rounds in a row that keep nothing"
    )
    batch_size: int = Field(8, ge=1, description="instruction requests per round")
    seed: int = Field(42, description="the run's RNG seed; also derives every request's sampling seed")
    overlap_rounds: Literal["auto", "on", "off"] = Field(
        "auto",
        exclude_if=lambda value: value == "auto",
        description="ask the next round's opening during this round's tail, on a guess of what it keeps, "
        "so the engine never drains between rounds; the run's results are the same either way, a wrong "
        "guess costs teacher time only. auto: on with the in-process engine on a GPU; off on a CPU, where "
        "it measured no faster, and with HTTP servers; always off while judge.enabled scores each round",
    )
    num_prompt_instructions: int | None = Field(
        None, ge=1, description="tasks shown per prompt; None = 8 for self-instruct, 3 for alpaca"
    )
    num_machine_instructions: int = Field(
        2, ge=0, description="self-instruct: how many of them come from the machine pool (once it has some)"
    )
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    templates: TemplatePaths = Field(default_factory=TemplatePaths)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    evol: EvolConfig = Field(default_factory=EvolConfig, description="evol-instruct's settings")
    magpie: MagpieConfig = Field(default_factory=MagpieConfig, description="magpie's settings")
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig, description="the judge (`selfinstruct judge`; `enabled`: every round)"
    )
    embedder: EmbedderConfig = Field(
        default_factory=EmbedderConfig,
        exclude_if=lambda value: value == EmbedderConfig(),
        description="the sentence embedder of dedup.semantic_duplicate, `select` and the report's map",
    )

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if self.method in FREE_TEXT_METHODS:
            # Rewrites, queries and answers are free text: no grammar to hold them to, so `auto` means off
            # (and no probe request), and `on` is a mistake worth saying.
            if self.decoding.constrained == "on":
                raise ValueError(
                    f"decoding.constrained is 'on', but method {self.method} writes free text (rewrites, "
                    "queries, answers): there is no reply layout to hold decoding to; use auto or off"
                )
            self.decoding.constrained = "off"
        if self.method == "self-instruct" and self.prompt_count <= self.num_machine_instructions:
            raise ValueError(
                f"num_prompt_instructions ({self.prompt_count}) must exceed num_machine_instructions "
                f"({self.num_machine_instructions}): every prompt shows at least one seed task"
            )
        return self

    @property
    def prompt_count(self) -> int:
        """Tasks shown in one instruction prompt."""
        if self.num_prompt_instructions is not None:
            return self.num_prompt_instructions
        # evol-instruct shows one task (the parent); magpie shows none (it needs no seeds)
        return {"self-instruct": 8, "alpaca": 3, "evol-instruct": 1, "magpie": 0}[self.method]


FREE_TEXT_METHODS = ("evol-instruct", "magpie")
"""Methods whose replies have no layout (`decoding.constrained` is off for them)."""

RUN_LENGTH_KEYS = ("rounds", "until", "time_budget", "max_rounds_without_progress")

FREE_KEYS: tuple[str, ...] = (
    *RUN_LENGTH_KEYS,
    # judging scores kept tasks and never changes which tasks are kept
    "judge",
    # overlapping rounds changes when requests are asked, never what is decided
    "overlap_rounds",
    # how many texts the embedder takes at once
    "embedder.batch_size",
    # where and how fast the teacher runs; none of these changes a completion or its cache key
    "teacher.base_urls",
    "teacher.api_key_env",
    "teacher.concurrency",
    "teacher.adaptive_concurrency",
    "teacher.max_retries",
    "teacher.timeout_s",
    "teacher.retry_base_s",
    "teacher.retry_max_s",
    "teacher.cache",
    "teacher.price_per_1k_prompt_tokens",
    "teacher.price_per_1k_completion_tokens",
    "teacher.engine.gpu_memory_utilization",
    "teacher.engine.tensor_parallel_size",
    "teacher.engine.pipeline_parallel_size",
    "teacher.engine.data_parallel_size",
    "teacher.engine.distributed_executor_backend",
    "teacher.engine.enable_prefix_caching",
    "teacher.engine.kv_cache_memory_gib",
    "teacher.engine.max_num_seqs",
)
"""Dotted config keys (or prefixes) that may differ between invocations on one run directory."""
