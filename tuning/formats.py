"""Prompt formats: how an (instruction, input) pair becomes the text the student sees.

`alpaca` is the Stanford Alpaca prompt format byte for byte (tatsu-lab/stanford_alpaca, train.py,
PROMPT_DICT): tools and checkpoints that speak Alpaca depend on the exact bytes, so they are
reproduced verbatim and a test pins them. `chat` uses the tokenizer's own chat template, so the
student is asked the way its base model was instruction-tuned.

Training and evaluation both go through `render_prompt`, so the prompt a model is scored on is the
prompt it was trained on.
"""

from __future__ import annotations

from typing import Any, Literal

PromptFormat = Literal["alpaca", "chat"]
PROMPT_FORMATS: tuple[str, ...] = ("alpaca", "chat")

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    """The Alpaca prompt; an empty input selects the no-input variant, as Stanford Alpaca does."""
    if input_text != "":
        return ALPACA_PROMPT_INPUT.format_map({"instruction": instruction, "input": input_text})
    return ALPACA_PROMPT_NO_INPUT.format_map({"instruction": instruction})


def chat_user_message(instruction: str, input_text: str = "") -> str:
    """The user turn for the chat format: the instruction, then the input after a blank line."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def chat_messages(instruction: str, input_text: str = "") -> list[dict[str, str]]:
    return [{"role": "user", "content": chat_user_message(instruction, input_text)}]


def render_prompt(fmt: str, tokenizer: Any, instruction: str, input_text: str = "") -> str:
    """The full prompt text, ending where the model's answer begins."""
    if fmt == "alpaca":
        return alpaca_prompt(instruction, input_text)
    if fmt == "chat":
        return tokenizer.apply_chat_template(
            chat_messages(instruction, input_text), tokenize=False, add_generation_prompt=True
        )
    raise ValueError(f"unknown prompt format {fmt!r}; expected one of {', '.join(PROMPT_FORMATS)}")


def render_example(
    fmt: str, tokenizer: Any, instruction: str, input_text: str, output: str
) -> tuple[str, str]:
    """(prompt, completion) texts; the completion ends with the end-of-sequence the model must learn.

    Alpaca appends the tokenizer's EOS to the output (Stanford Alpaca does; alpaca-lora's default did
    not, and its users got runaway generation). Chat renders the whole conversation with the template,
    so the completion carries whatever the template closes a turn with (ChatML: `<|im_end|>\\n`).
    """
    prompt = render_prompt(fmt, tokenizer, instruction, input_text)
    if fmt == "alpaca":
        return prompt, f"{output}{tokenizer.eos_token}"
    full = tokenizer.apply_chat_template(
        [*chat_messages(instruction, input_text), {"role": "assistant", "content": output}], tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside a full conversation")
    completion = full[len(prompt) :]
    if tokenizer.eos_token not in completion:
        completion += tokenizer.eos_token
    return prompt, completion
