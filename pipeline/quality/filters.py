"""Quality filters: small named rules, each returning a reason code or None.

The instruction rules are Self-Instruct's and Alpaca's post-processing filters; the instance rules
are Self-Instruct's `prepare_for_finetuning` checks plus placeholder, refusal, repeat and filler checks. Every
rule can be switched off and tuned from YAML through `FilterConfig`; nothing is dropped without a
reason code, so rejections can be written out and counted.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from functools import lru_cache

from pipeline.quality.config import FilterConfig
from pipeline.quality.rouge import rouge_l, tokenize
from pipeline.run.schemas import Instance

_DEFAULT = FilterConfig()


def _normalize(text: str) -> str:
    """Whitespace runs to one space, curly apostrophes to straight: how rules compare text."""
    return " ".join(text.replace("\u2019", "'").split())


@lru_cache(maxsize=64)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


# -- instruction rules: (text stripped, finish reason, config) -> reason or None ------------------
def rule_too_short(text: str, finish_reason: str | None, config: FilterConfig) -> str | None:
    return "too_short" if len(text.split()) < config.min_words else None


def rule_too_long(text: str, finish_reason: str | None, config: FilterConfig) -> str | None:
    return "too_long" if len(text.split()) > config.max_words else None


def rule_blacklisted_word(text: str, finish_reason: str | None, config: FilterConfig) -> str | None:
    pattern = _word_pattern(tuple(config.blacklist))
    return "blacklisted_word" if pattern is not None and pattern.search(text) else None


def rule_banned_prefix(text: str, finish_reason: str | None, config: FilterConfig) -> str | None:
    """Any of `config.banned_prefixes` (Self-Instruct bans "Write a program"); the reason code and
    switch keep Self-Instruct's name, `write_a_program`, so existing configs and runs still read."""
    lowered = text.casefold()
    hit = any(lowered.startswith(prefix.casefold()) for prefix in config.banned_prefixes)
    return "write_a_program" if hit else None


def rule_starts_with_punctuation(text: str, finish_reason: str | None, config: FilterConfig) -> str | None:
    return "starts_with_punctuation" if text[:1] and text[0] in string.punctuation else None


def rule_starts_with_non_ascii(text: str, finish_reason: str | None, config: FilterConfig) -> str | None:
    return "starts_with_non_ascii" if text[:1] and not text[0].isascii() else None


def rule_truncated(text: str, finish_reason: str | None, config: FilterConfig) -> str | None:
    return "truncated" if finish_reason == "length" else None


InstructionRule = Callable[[str, "str | None", FilterConfig], "str | None"]
INSTRUCTION_RULES: dict[str, InstructionRule] = {
    "too_short": rule_too_short,
    "too_long": rule_too_long,
    "blacklisted_word": rule_blacklisted_word,
    "write_a_program": rule_banned_prefix,
    "starts_with_punctuation": rule_starts_with_punctuation,
    "starts_with_non_ascii": rule_starts_with_non_ascii,
    "truncated": rule_truncated,
}


def check_instruction(
    text: str, finish_reason: str | None = None, config: FilterConfig | None = None
) -> list[str]:
    """Every reason code the instruction fails, in rule order; [] means it passes."""
    config = config or _DEFAULT
    stripped = _normalize(text)
    return [
        reason
        for name, rule in INSTRUCTION_RULES.items()
        if getattr(config, name) and (reason := rule(stripped, finish_reason, config)) is not None
    ]


# -- instance rules: (instance, config) -> reason or None ------------------------------------------
def rule_empty_output(instance: Instance, config: FilterConfig) -> str | None:
    return "empty_output" if not instance.output.strip() else None


def rule_output_equals_input(instance: Instance, config: FilterConfig) -> str | None:
    output = _normalize(instance.output)
    return "output_equals_input" if output and output == _normalize(instance.input) else None


def rule_ends_with_colon(instance: Instance, config: FilterConfig) -> str | None:
    ends = instance.input.strip().endswith(":") or instance.output.strip().endswith(":")
    return "ends_with_colon" if ends else None


def rule_placeholder_output(instance: Instance, config: FilterConfig) -> str | None:
    output = _normalize(instance.output).casefold()
    hit = any(output == _normalize(p).casefold() for p in config.placeholders)
    return "placeholder_output" if hit else None


def rule_refusal(instance: Instance, config: FilterConfig) -> str | None:
    output = _normalize(instance.output).casefold()
    hit = any(_normalize(p).casefold() in output for p in config.refusal_phrases)
    return "refusal" if hit else None


def rule_output_repeats_input(instance: Instance, config: FilterConfig) -> str | None:
    """The output is (nearly) the input again: ROUGE-L at or above the threshold and not one word that
    the input lacks. A classification label scores low against its input (ROUGE-L weighs recall: one
    word of a ten-word input is 0.18), and an edit (a grammar fix, a translation) brings new words, so
    neither is caught; what is caught is a copy, whole or with words dropped or re-cased."""
    if not instance.input.strip() or not instance.output.strip():
        return None
    out_tokens = tokenize(instance.output)
    if not out_tokens or not set(out_tokens) <= set(tokenize(instance.input)):
        return None
    return (
        "output_repeats_input"
        if rouge_l(instance.input, instance.output) >= config.repeat_threshold
        else None
    )


def rule_filler_output(instance: Instance, config: FilterConfig) -> str | None:
    output = _normalize(instance.output).casefold()
    hit = any(_normalize(p).casefold() in output for p in config.filler_phrases)
    return "filler_output" if hit else None


def rule_output_repeats_instruction(instance: Instance, instruction: str, config: FilterConfig) -> str | None:
    """The output restates the instruction instead of carrying it out ("Create a business idea that ..."
    answered with itself). An instruction is never a right answer to itself, so ROUGE-L alone decides."""
    if not instruction.strip() or not instance.output.strip():
        return None
    score = rouge_l(instruction, instance.output)
    return "output_repeats_instruction" if score >= config.repeat_threshold else None


InstanceRule = Callable[[Instance, FilterConfig], "str | None"]
INSTANCE_RULES: dict[str, InstanceRule] = {
    "empty_output": rule_empty_output,
    "output_equals_input": rule_output_equals_input,
    "ends_with_colon": rule_ends_with_colon,
    "placeholder_output": rule_placeholder_output,
    "refusal": rule_refusal,
    "output_repeats_input": rule_output_repeats_input,
    "filler_output": rule_filler_output,
}
TaskInstanceRule = Callable[[Instance, str, FilterConfig], "str | None"]
TASK_INSTANCE_RULES: dict[str, TaskInstanceRule] = {
    "output_repeats_instruction": rule_output_repeats_instruction,
}
"""Instance rules that also need the task's instruction."""


def check_instance(
    instance: Instance, config: FilterConfig | None = None, instruction: str | None = None
) -> list[str]:
    """Every reason code one instance fails on its own; [] means it passes. The rules that compare the
    output with the instruction run only when `instruction` is given."""
    config = config or _DEFAULT
    reasons = [
        reason
        for name, rule in INSTANCE_RULES.items()
        if getattr(config, name) and (reason := rule(instance, config)) is not None
    ]
    if instruction is not None:
        reasons += [
            reason
            for name, task_rule in TASK_INSTANCE_RULES.items()
            if getattr(config, name) and (reason := task_rule(instance, instruction, config)) is not None
        ]
    return reasons


def filter_instances(
    instances: list[Instance], config: FilterConfig | None = None, *, instruction: str | None = None
) -> tuple[list[Instance], list[tuple[Instance, list[str]]]]:
    """Apply the instance rules (with `instruction`, also those comparing the output with it), then the
    task-level ones, in this order: exact duplicates (keep the first), conflicting outputs for one
    non-empty input (drop all of them), the per-task cap (keep the first). Returns (kept in input
    order, rejected with their reason codes)."""
    config = config or _DEFAULT
    reasons: list[list[str]] = [check_instance(instance, config, instruction) for instance in instances]
    alive = [i for i, r in enumerate(reasons) if not r]

    def key(instance: Instance) -> tuple[str, str]:
        return _normalize(instance.input), _normalize(instance.output)

    if config.duplicate_instance:
        seen: set[tuple[str, str]] = set()
        for i in alive:
            k = key(instances[i])
            if k in seen:
                reasons[i].append("duplicate_instance")
            seen.add(k)
        alive = [i for i in alive if not reasons[i]]

    if config.conflicting_outputs:
        outputs: dict[str, set[str]] = {}
        for i in alive:
            inp, out = key(instances[i])
            if inp:
                outputs.setdefault(inp, set()).add(out)
        for i in alive:
            inp, _ = key(instances[i])
            if inp and len(outputs[inp]) > 1:
                reasons[i].append("conflicting_outputs")
        alive = [i for i in alive if not reasons[i]]

    if config.too_many_instances:
        for i in alive[config.max_instances :]:
            reasons[i].append("too_many_instances")
        alive = alive[: config.max_instances]

    kept = [instances[i] for i in alive]
    rejected = [(instances[i], reasons[i]) for i in range(len(instances)) if reasons[i]]
    return kept, rejected
