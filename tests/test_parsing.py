"""Parsing teacher replies: well-formed, cut-off and garbage replies, for both recipes and both styles."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.generate.classify import Label, parse_label
from pipeline.generate.parsing import (
    PARSE_EMPTY_REPLY,
    PARSE_MALFORMED_ITEM,
    PARSE_NO_CLASS_LABEL,
    PARSE_NO_INSTANCES,
    PARSE_NO_ITEMS,
    PARSE_PREAMBLE,
    TRUNCATED,
    parse_alpaca_reply,
    parse_classification_instances,
    parse_generation_instances,
    parse_instances,
    parse_instruction_list,
)
from pipeline.run.schemas import Instance


def codes(problems) -> list[str]:
    return [c for p in problems for c in p.codes]


# -- self-instruct instruction lists ----------------------------------------------------------------
def test_completion_reply_continues_the_open_number():
    reply = " Write a haiku about   autumn leaves.\n10. summarize the plot of the film in two sentences.\n11 . List three uses of NASA satellites"
    parsed = parse_instruction_list(reply)
    assert parsed.instructions == [
        "Write a haiku about autumn leaves.",
        "Summarize the plot of the film in two sentences.",
        "List three uses of NASA satellites",  # only the first letter changes case
    ]
    assert parsed.problems == []


def test_completion_reply_keeps_text_that_only_looks_numbered():
    parsed = parse_instruction_list(
        " Convert 3.5 kilometres to miles.\n10. Explain what 2.0 means in a version number."
    )
    assert parsed.instructions == [
        "Convert 3.5 kilometres to miles.",
        "Explain what 2.0 means in a version number.",
    ]


def test_cut_off_reply_still_yields_its_items_for_the_filters_to_judge():
    # The finish reason travels separately; the filters reject every item of a cut-off reply.
    parsed = parse_instruction_list(
        " Describe a sunset over the sea.\n10. Write a letter to a friend who moved aw"
    )
    assert len(parsed.instructions) == 2


def test_chat_reply_with_preamble_and_numbers():
    reply = "Sure! Here are some more tasks:\n\n9. Write a short poem about rain.\n10. Name three rivers in Africa.\n"
    parsed = parse_instruction_list(reply, chat=True)
    assert parsed.instructions == ["Write a short poem about rain.", "Name three rivers in Africa."]
    assert codes(parsed.problems) == [PARSE_PREAMBLE]


def test_chat_reply_with_bullets_and_no_preamble():
    reply = "- Explain how vaccines work.\n- Suggest a name for a coffee shop.\n* Translate 'good morning' to French."
    parsed = parse_instruction_list(reply, chat=True)
    assert parsed.instructions == [
        "Explain how vaccines work.",
        "Suggest a name for a coffee shop.",
        "Translate 'good morning' to French.",
    ]
    assert parsed.problems == []


def test_chat_reply_that_is_one_bare_instruction():
    parsed = parse_instruction_list("9. Give me a recipe for pancakes.", chat=True)
    assert parsed.instructions == ["Give me a recipe for pancakes."]


def test_garbage_and_empty_replies_become_problems():
    assert codes(parse_instruction_list("").problems) == [PARSE_EMPTY_REPLY]
    assert codes(parse_instruction_list("   \n\t ").problems) == [PARSE_EMPTY_REPLY]
    assert codes(parse_instruction_list("\n10. \n11. ").problems) == [PARSE_NO_ITEMS]
    assert parse_instruction_list("\n10. \n11. ").instructions == []
    # Garbage text is a candidate like any other; the filters judge it.
    assert parse_instruction_list(" ###%%% ???").instructions == ["###%%% ???"]


# -- alpaca --------------------------------------------------------------------------------------------
ALPACA_REPLY = """ Name the capital of Australia.
4. Input:
<noinput>
4. Output:
Canberra is the capital of Australia.
###
5. Instruction: Rewrite the sentence in the passive voice.
5. Input:
The cat chased the mouse.
5. Output:
The mouse was chased by the cat.
###
6. Instruction: Give two synonyms for "happy".
6. Input:
<noinput>
6. Output:
Joyful, cheerful.
###
7. Instruction: Explain why the sky"""


def test_alpaca_reply_well_formed():
    parsed = parse_alpaca_reply(ALPACA_REPLY.rsplit("###", 1)[0], "stop", 3)
    assert [i.instruction for i in parsed.items] == [
        "Name the capital of Australia.",
        "Rewrite the sentence in the passive voice.",
        'Give two synonyms for "happy".',
    ]
    assert parsed.items[0].input == ""  # <noinput>
    assert parsed.items[1].input == "The cat chased the mouse."
    assert parsed.items[1].output == "The mouse was chased by the cat."
    assert not any(i.truncated for i in parsed.items)
    assert parsed.problems == []


def test_alpaca_cut_off_reply_loses_only_its_last_item():
    parsed = parse_alpaca_reply(ALPACA_REPLY, "length", 3)
    assert len(parsed.items) == 3
    assert codes(parsed.problems) == [TRUNCATED]  # the length limit's doing, not a format error
    # A malformed item before the last is the format's fault, cut-off reply or not.
    broken = ALPACA_REPLY.replace("5. Input:", "5. Inptu:", 1)
    assert codes(parse_alpaca_reply(broken, "length", 3).problems) == [PARSE_MALFORMED_ITEM, TRUNCATED]
    # A complete-looking last item of a cut-off reply is kept as a candidate, marked truncated.
    parsed = parse_alpaca_reply(ALPACA_REPLY.rsplit("###", 1)[0], "length", 3)
    assert [i.truncated for i in parsed.items] == [False, False, True]


def test_alpaca_malformed_and_empty():
    parsed = parse_alpaca_reply(" Do something.\n4. Output:\nmissing input", "stop", 3)
    assert parsed.items == []
    assert codes(parsed.problems) == [PARSE_MALFORMED_ITEM]
    assert codes(parse_alpaca_reply("", "stop", 3).problems) == [PARSE_EMPTY_REPLY]


def test_alpaca_chat_reply_with_its_own_numbering():
    reply = (
        "1. Instruction: List three primary colours.\n1. Input:\n<noinput>\n1. Output:\nRed, yellow, blue."
    )
    parsed = parse_alpaca_reply(reply, "stop", 3, chat=True)
    assert [i.instruction for i in parsed.items] == ["List three primary colours."]
    assert parsed.items[0].output == "Red, yellow, blue."


# -- instances -----------------------------------------------------------------------------------------
def test_input_first_instances():
    reply = (
        "Example 1\nSentence: I love this.\nOutput: Positive\n"
        "Example 2\nInput: The food was cold.\nOutput: Negative\n"
    )
    parsed = parse_generation_instances(reply, "stop")
    assert parsed.instances == [
        Instance(input="Sentence: I love this.", output="Positive"),
        Instance(input="The food was cold.", output="Negative"),  # a leading "Input:" is removed
    ]


def test_input_first_single_output_and_extra_pairs():
    parsed = parse_generation_instances("Output: The Nile is the longest river.", "stop")
    assert parsed.instances == [Instance(input="", output="The Nile is the longest river.")]
    parsed = parse_generation_instances("Question: 2+2?\nOutput: 4\nInput 2: 3+3?", "stop")
    assert parsed.instances == [Instance(input="Question: 2+2?", output="4")]


def test_input_first_cut_off_drops_last_instance_with_a_reason():
    reply = "Example 1\nList: 3, 1\nOutput: 1, 3\nExample 2\nList: 9, 4\nOutput: 4,"
    parsed = parse_generation_instances(reply, "length")
    assert parsed.instances == [Instance(input="List: 3, 1", output="1, 3")]
    assert codes(parsed.problems) == [TRUNCATED]


def test_input_first_garbage():
    assert codes(parse_generation_instances("just some words", "stop").problems) == [PARSE_NO_INSTANCES]
    assert codes(parse_generation_instances("", "stop").problems) == [PARSE_EMPTY_REPLY]


def test_output_first_instances():
    reply = "Class label: Positive\nReview: Great phone.\nClass label: Negative\nReview: Broke in a day.\nClass label: Neutral"
    parsed = parse_classification_instances(reply, "stop")
    assert parsed.instances == [
        Instance(input="Review: Great phone.", output="Positive"),
        Instance(input="Review: Broke in a day.", output="Negative"),
        Instance(input="", output="Neutral"),
    ]
    cut = parse_classification_instances(reply, "length")
    assert len(cut.instances) == 2 and codes(cut.problems) == [TRUNCATED]
    assert codes(parse_classification_instances("Positive\nNegative", "stop").problems) == [
        PARSE_NO_CLASS_LABEL
    ]


def test_parse_instances_dispatches_on_the_label():
    reply = "Class label: Yes\nNumber: 7\nOutput: not this"
    assert parse_instances(reply, "stop", True).instances[0].output == "Yes"
    assert parse_instances(reply, "stop", False).instances[0].output == "not this"


def test_yes_no_labels():
    assert parse_label(" Yes") is Label.YES
    assert parse_label("yes.") is Label.YES
    assert parse_label("YES, it is") is Label.YES
    assert parse_label(" No") is Label.NO
    assert parse_label("no") is Label.NO
    assert parse_label("") is Label.UNCLEAR
    assert parse_label(None) is Label.UNCLEAR
    assert parse_label("Maybe") is Label.UNCLEAR
    assert parse_label("Nope") is Label.UNCLEAR
    assert Label.YES.is_classification and not Label.UNCLEAR.is_classification


# -- never raises --------------------------------------------------------------------------------------
PIECES = st.sampled_from(
    [
        "Example 1",
        "Example",
        "Output:",
        "Output 2 :",
        "Input:",
        "Class label:",
        "###",
        "\n",
        "\n12. ",
        "4. Instruction:",
        "4. Input:",
        "4. Output:",
        "<noinput>",
        " ",
        ":",
        "9.",
        "- ",
        "Sure, here:",
        "é",
        "\x00",
    ]
)
TEXTS = st.one_of(
    st.text(max_size=400), st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=40).map("".join)
)
FINISH = st.sampled_from([None, "stop", "length", "unknown"])


@settings(max_examples=400, deadline=None)
@given(text=TEXTS, finish=FINISH, chat=st.booleans(), clf=st.booleans())
def test_parsing_never_raises(text: str, finish: str | None, chat: bool, clf: bool):
    listed = parse_instruction_list(text, chat=chat)
    assert all(isinstance(i, str) and i.strip() == i and i for i in listed.instructions)
    assert listed.instructions or listed.problems
    alpaca = parse_alpaca_reply(text, finish, 3, chat=chat)
    assert alpaca.items or alpaca.problems
    for item in alpaca.items:
        assert isinstance(item.instruction, str) and isinstance(item.output, str)
    inst = parse_instances(text, finish, clf)
    assert all(isinstance(i, Instance) for i in inst.instances)
    assert inst.instances or inst.problems
    assert parse_label(text) in set(Label)
