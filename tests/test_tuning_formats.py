"""Prompt formats: the Alpaca strings byte for byte, and the chat template round trip."""

from __future__ import annotations

import pytest

from pipeline.core.model import bundled_model_dir
from tuning.formats import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    alpaca_prompt,
    render_example,
    render_prompt,
)

# Stanford Alpaca's PROMPT_DICT (tatsu-lab/stanford_alpaca, train.py), written out as raw bytes.
EXPECTED_INPUT = (
    b"Below is an instruction that describes a task, paired with an input that provides further context. "
    b"Write a response that appropriately completes the request.\n\n"
    b"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
EXPECTED_NO_INPUT = (
    b"Below is an instruction that describes a task. Write a response that appropriately completes the request."
    b"\n\n### Instruction:\n{instruction}\n\n### Response:"
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bundled_model_dir()))


def test_alpaca_templates_are_byte_identical():
    assert ALPACA_PROMPT_INPUT.encode("utf-8") == EXPECTED_INPUT
    assert ALPACA_PROMPT_NO_INPUT.encode("utf-8") == EXPECTED_NO_INPUT


def test_alpaca_prompt_picks_variant_by_input():
    with_input = alpaca_prompt("Add the numbers.", "2 and 3")
    assert with_input.endswith("### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:")
    assert with_input.startswith("Below is an instruction that describes a task, paired with an input")
    without = alpaca_prompt("Name a colour.")
    assert without.endswith("### Instruction:\nName a colour.\n\n### Response:")
    assert "### Input:" not in without
    # Braces in user text are data, not format fields.
    assert "{x}" in alpaca_prompt("Echo {x}.", "{y}")


def test_alpaca_example_appends_eos(tokenizer):
    prompt, completion = render_example("alpaca", tokenizer, "Name a colour.", "", "Blue.")
    assert prompt == alpaca_prompt("Name a colour.")
    assert completion == "Blue." + tokenizer.eos_token


def test_chat_example_continues_the_prompt(tokenizer):
    prompt, completion = render_example("chat", tokenizer, "Add the numbers.", "2 and 3", "5")
    assert prompt == render_prompt("chat", tokenizer, "Add the numbers.", "2 and 3")
    assert "Add the numbers.\n\n2 and 3" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert completion.startswith("5" + tokenizer.eos_token)


def test_unknown_format_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="unknown prompt format"):
        render_prompt("vicuna", tokenizer, "x")
