"""Every quality rule rejects what it should, passes what it should, and can be switched off."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.quality.config import ALPACA_BLACKLIST_ADDITIONS, SELF_INSTRUCT_BLACKLIST
from pipeline.quality.filters import (
    INSTANCE_RULES,
    INSTRUCTION_RULES,
    TASK_INSTANCE_RULES,
    FilterConfig,
    check_instance,
    check_instruction,
    filter_instances,
)
from pipeline.run.schemas import Instance

GOOD = "Summarize the main argument of the given paragraph in two sentences."


def test_good_instruction_passes() -> None:
    assert check_instruction(GOOD) == []
    assert check_instruction(GOOD, finish_reason="stop") == []


@pytest.mark.parametrize(
    ("text", "finish_reason", "reason"),
    [
        ("Name three colors", None, "too_short"),
        ("Tell me.", None, "too_short"),
        ("", None, "too_short"),
        ("word " * 151, None, "too_long"),
        ("Describe what you see in this image of a beach.", None, "blacklisted_word"),
        ("Create a flowchart for making tea at home.", None, "blacklisted_word"),
        ("Please GO TO the store and buy some milk.", None, "blacklisted_word"),
        ("Compose music for a short birthday song.", None, "blacklisted_word"),
        ("Write a program that sorts a list of numbers.", None, "write_a_program"),
        ("write a program to reverse a string quickly.", None, "write_a_program"),
        ('"Explain the difference between weather and climate."', None, "starts_with_punctuation"),
        ("- Explain the difference between weather and climate.", None, "starts_with_punctuation"),
        ("Éxplain the difference between weather and climate.", None, "starts_with_non_ascii"),
        ("写 a short poem about the autumn moon.", None, "starts_with_non_ascii"),
        (GOOD, "length", "truncated"),
    ],
)
def test_instruction_rule_positive(text: str, finish_reason: str | None, reason: str) -> None:
    assert reason in check_instruction(text, finish_reason)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Name three primary colors", "too_short"),  # 4 words is enough
        ("word " * 150, "too_long"),
        ("Describe the imagery used in the following poem.", "blacklisted_word"),  # whole words only
        ("Explain why the filed report was late.", "blacklisted_word"),
        ("Go over the main points of the text below.", "blacklisted_word"),
        ("Explain how to write a program specification.", "write_a_program"),
        ("Explain the difference between weather and climate.", "starts_with_punctuation"),
        ("   Explain the difference between weather and climate.", "starts_with_punctuation"),
        ("Explain the café culture of Paris in a paragraph.", "starts_with_non_ascii"),
    ],
)
def test_instruction_rule_negative(text: str, reason: str) -> None:
    assert reason not in check_instruction(text)


def test_every_blacklist_term_is_rejected() -> None:
    terms = [*SELF_INSTRUCT_BLACKLIST, *ALPACA_BLACKLIST_ADDITIONS]
    assert len(SELF_INSTRUCT_BLACKLIST) == 13 and len(terms) == 18
    for term in terms:
        assert check_instruction(f"Please handle the {term.upper()} in this request now.") == [
            "blacklisted_word"
        ]


def test_several_reasons_at_once_and_rules_off() -> None:
    assert check_instruction("- a map", "length") == [
        "too_short",
        "blacklisted_word",
        "starts_with_punctuation",
        "truncated",
    ]
    off = FilterConfig(
        too_short=False, blacklisted_word=False, starts_with_punctuation=False, truncated=False
    )
    assert check_instruction("- a map", "length", off) == []


def test_rule_parameters() -> None:
    config = FilterConfig(min_words=2, max_words=5, blacklist=["recipe"], banned_prefixes=["Translate"])
    assert check_instruction("Bake bread", config=config) == []
    assert check_instruction("Describe the image of the sea", config=config) == ["too_long"]
    assert check_instruction("Share a recipe", config=config) == ["blacklisted_word"]
    assert check_instruction("Translate this to French", config=config) == ["write_a_program"]
    assert check_instruction("Draw a cat today", config=FilterConfig(blacklist=[])) == []


def test_config_is_strict_and_every_rule_has_a_switch() -> None:
    with pytest.raises(ValidationError):
        FilterConfig(unknown_rule=True)
    with pytest.raises(ValidationError):
        FilterConfig(max_instances=0)
    config = FilterConfig()
    for name in [
        *INSTRUCTION_RULES,
        *INSTANCE_RULES,
        *TASK_INSTANCE_RULES,
        "duplicate_instance",
        "conflicting_outputs",
        "too_many_instances",
    ]:
        assert getattr(config, name) is True


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        (Instance(input="", output="   "), "empty_output"),
        (Instance(input="hello world", output="hello  world"), "output_equals_input"),
        (Instance(input="Translate the following:", output="Bonjour"), "ends_with_colon"),
        (Instance(input="", output="Here are the steps:"), "ends_with_colon"),
        (Instance(input="x", output="N/A"), "placeholder_output"),
        (Instance(input="x", output=" <nooutput> "), "placeholder_output"),
        (Instance(input="x", output="..."), "placeholder_output"),
        (Instance(input="", output="As an AI language model, I cannot browse."), "refusal"),
        (Instance(input="", output="I\u2019m sorry, but I cannot help with that."), "refusal"),
    ],
)
def test_instance_rule_positive(instance: Instance, reason: str) -> None:
    assert reason in check_instance(instance)


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        (Instance(input="", output="Paris"), "empty_output"),
        (Instance(input="", output="hello"), "output_equals_input"),
        (Instance(input="hello", output="Hello!"), "output_equals_input"),
        (Instance(input="Time: 10:30", output="morning"), "ends_with_colon"),
        (Instance(input="x", output="N/A is short for not applicable."), "placeholder_output"),
        (Instance(input="x", output="Wait..."), "placeholder_output"),
        (Instance(input="", output="I'm sorry to hear about your loss."), "refusal"),
    ],
)
def test_instance_rule_negative(instance: Instance, reason: str) -> None:
    assert reason not in check_instance(instance)


@pytest.mark.parametrize(
    ("instance", "instruction", "reason"),
    [
        # the hand review's example: an instruction answered with itself
        (
            Instance(input="", output="A new business idea that will help people find a place to live."),
            "Create a new business idea that will help people find a place to live.",
            "output_repeats_instruction",
        ),
        # the input copied back, re-cased and with a word dropped
        (
            Instance(
                input="The committee will meet on Tuesday to discuss the budget for next year.",
                output="the committee will meet on tuesday to discuss the budget for next year",
            ),
            "Summarize the text.",
            "output_repeats_input",
        ),
        (
            Instance(
                input="Paris is big and old and full of museums.",
                output="Paris is big and old and full of museums!!",
            ),
            "Fix the grammar.",
            "output_repeats_input",
        ),
        (
            Instance(input="", output="Lorem ipsum dolor sit amet, consectetur adipiscing elit."),
            "Write a poem.",
            "filler_output",
        ),
        (
            Instance(input="", output="Dear team, [Your text here] Best regards"),
            "Write an email.",
            "filler_output",
        ),
    ],
)
def test_repeat_and_filler_rules_positive(instance: Instance, instruction: str, reason: str) -> None:
    assert reason in check_instance(instance, instruction=instruction)
    assert filter_instances([instance], instruction=instruction)[1] == [(instance, [reason])]
    switched_off = FilterConfig(**{reason: False})
    assert reason not in check_instance(instance, switched_off, instruction)


@pytest.mark.parametrize(
    ("instance", "instruction", "reason"),
    [
        # an answer that uses the instruction's words but carries it out
        (
            Instance(
                input="", output="A rental app that matches tenants with verified landlords by commute time."
            ),
            "Create a new business idea that will help people find a place to live.",
            "output_repeats_instruction",
        ),
        # a grammar fix brings words the input lacks
        (
            Instance(
                input="She go to school every day and she like it a lot.",
                output="She goes to school every day and she likes it a lot.",
            ),
            "Correct the grammar of the sentence.",
            "output_repeats_input",
        ),
        # a classification label taken from its input scores low (ROUGE-L weighs recall)
        (
            Instance(
                input="I loved this phone, the battery lasts for days. Positive or negative?",
                output="Positive",
            ),
            "Classify the sentiment of the review.",
            "output_repeats_input",
        ),
        (
            Instance(input="Options: cat, dog", output="dog"),
            "Which is the larger animal?",
            "output_repeats_input",
        ),
        (
            Instance(input="", output="Insert the key and turn it to the left."),
            "How do I open the door?",
            "filler_output",
        ),
        (Instance(input="", output="A placeholder is a stand-in."), "Define placeholder.", "filler_output"),
    ],
)
def test_repeat_and_filler_rules_negative(instance: Instance, instruction: str, reason: str) -> None:
    assert reason not in check_instance(instance, instruction=instruction)


def test_instruction_rule_runs_only_with_the_instruction_and_threshold_is_configurable() -> None:
    instance = Instance(input="", output="Write a haiku about the sea")
    assert check_instance(instance) == []
    assert check_instance(instance, instruction="Write a haiku about the sea.") == [
        "output_repeats_instruction"
    ]
    # 6 of 8 words shared: ROUGE-L 0.857
    near = Instance(input="", output="Write a haiku about the sea today please")
    assert check_instance(near, instruction="Write a haiku about the sea.") == ["output_repeats_instruction"]
    strict = FilterConfig(repeat_threshold=0.9)
    assert check_instance(near, strict, instruction="Write a haiku about the sea.") == []


def test_filter_instances_task_level_rules() -> None:
    instances = [
        Instance(input="2 + 2", output="4"),
        Instance(input="2 + 2", output="4"),  # exact duplicate: keep the first
        Instance(input="3 + 3", output="6"),
        Instance(input="3 + 3", output="7"),  # conflicting: both go
        Instance(input="", output="an answer"),
        Instance(input="", output="another answer"),  # empty inputs never conflict
        Instance(input="1 + 1", output=""),  # empty output
        Instance(input="5 + 5", output="10"),
        Instance(input="6 + 6", output="12"),
        Instance(input="7 + 7", output="14"),  # sixth valid one: over the cap of 5
    ]
    kept, rejected = filter_instances(instances)
    assert kept == [instances[i] for i in (0, 4, 5, 7, 8)]
    reasons = {id(instance): r for instance, r in rejected}
    assert reasons[id(instances[1])] == ["duplicate_instance"]
    assert reasons[id(instances[2])] == ["conflicting_outputs"]
    assert reasons[id(instances[3])] == ["conflicting_outputs"]
    assert reasons[id(instances[6])] == ["empty_output"]
    assert reasons[id(instances[9])] == ["too_many_instances"]
    assert len(kept) + len(rejected) == len(instances)  # nothing dropped silently


def test_filter_instances_switches() -> None:
    instances = [
        Instance(input="a", output="1"),
        Instance(input="a", output="1"),
        Instance(input="a", output="2"),
    ]
    config = FilterConfig(duplicate_instance=False, conflicting_outputs=False, max_instances=2)
    kept, rejected = filter_instances(instances, config)
    assert kept == instances[:2]
    assert rejected == [(instances[2], ["too_many_instances"])]
    kept, rejected = filter_instances(
        instances, FilterConfig(too_many_instances=False, conflicting_outputs=False)
    )
    assert kept == [instances[0], instances[2]]
    assert filter_instances([]) == ([], [])
