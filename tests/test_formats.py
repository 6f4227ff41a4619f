"""Reply formats: what a layout's grammar admits parses back into the fields it was built from.

Property tests on three levels: a field's regex against a brute-force definition (no forbidden word,
whatever surrounds it); each format's replies, built from random fields, against its own parser; and
the regex the tests read against the EBNF grammar the engine is sent, through xgrammar itself.
"""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import UserError
from pipeline.generate.classify import Label
from pipeline.generate.config import GenerateConfig
from pipeline.generate.formats import (
    AlpacaList,
    Classification,
    Instances,
    InstructionList,
    RunFormats,
    last_item,
    terminators,
)
from pipeline.generate.grammar import ANY, LETTERS, NON_SPACE, CharSet, field, render, render_ebnf
from pipeline.generate.parsing import NO_INPUT, TRUNCATED
from pipeline.teachers.base import SamplingParams, Structured

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


# -- a field's regex against its definition ------------------------------------------------------------
def occurs_across(words: list[str], before: str, text: str, after: str) -> bool:
    """Does a word occur in before + text + after somewhere it overlaps `text`?"""
    whole = before + text + after
    lo, hi = len(before), len(before) + len(text)
    for word in words:
        start = whole.find(word)
        while start != -1:
            if start < hi and start + len(word) > lo:
                return True
            start = whole.find(word, start + 1)
    return False


WORDS = st.lists(st.text(alphabet="ab\n", min_size=1, max_size=4), min_size=1, max_size=3)
TEXT = st.text(alphabet="abc\n", max_size=14)


@SETTINGS
@given(words=WORDS, text=TEXT)
def test_field_regex_is_exactly_the_text_without_the_words(words, text):
    rx = render(field(words, allowed=ANY, first=ANY))
    expected = len(text) >= 1 and not any(w in text for w in words)
    assert (re.fullmatch(rx, text) is not None) == expected


@SETTINGS
@given(
    words=WORDS, text=TEXT, before=st.text(alphabet="ab\n", max_size=4), after=st.text("abc\n", max_size=4)
)
def test_field_regex_keeps_words_out_across_its_context(words, text, before, after):
    """Sound with context: a field that matches never makes a word together with the text around it."""
    rx = render(
        field(words, allowed=CharSet.excluding("c"), first=NON_SPACE, after=before, before=("", after))
    )
    if re.fullmatch(rx, text):
        assert text and text[0] not in " \n" and "c" not in text
        assert not occurs_across(words, before, text, after)
        assert not occurs_across(words, before, text, "")


def test_field_first_character_and_allowed_set():
    rx = render(field(["16."], allowed=CharSet.excluding("\n"), first=LETTERS))
    assert re.fullmatch(rx, "Write a poem") and not re.fullmatch(rx, "1. Write")
    assert not re.fullmatch(rx, "Write\nmore") and not re.fullmatch(rx, "")
    assert not re.fullmatch(rx, "Count to 16. Then stop") and re.fullmatch(rx, "Count to 16 then 17.")


# -- formats: building, parsing, the engine's grammar -----------------------------------------------------
FRAGMENTS = [
    "Write",
    " a",
    " poem",
    " about",
    "the sea",
    " 16",
    ".",
    ":",
    " ",
    "\n",
    "Example",
    " 6",
    "Output",
    "Input",
    ":",
    "Task",
    "#",
    "##",
    "Class label",
    "Instruction",
    "20",
    "x",
    "é",
]
FIELD_TEXT = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10).map("".join)
ONE_LINE_TEXT = FIELD_TEXT.map(lambda s: s.replace("\n", " "))
INSTRUCTION = st.tuples(st.sampled_from(["Write", "Plan", "Explain", "List"]), ONE_LINE_TEXT).map("".join)


@functools.cache
def compiled_grammar(grammar: str):
    """xgrammar's compiled form of an EBNF grammar, for matching strings (no tokenizer needed)."""
    xgr = pytest.importorskip("xgrammar")
    return xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False).compile_grammar(grammar)


def xgrammar_accepts(grammar: str, text: str) -> bool:
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(compiled_grammar(grammar), terminate_without_stop_token=True)
    return bool(matcher.accept_string(text)) and bool(matcher.is_terminated())


def check_engine_grammar(fmt, text: str) -> None:
    """The grammar the engine gets admits exactly what the regex the tests read admits."""
    assert xgrammar_accepts(fmt.grammar(), text) == fmt.matches(text), text


@functools.cache
def replies(fmt) -> st.SearchStrategy[str]:
    """Strings the format's regex matches, as the engine would return them (built once per format)."""
    return st.from_regex(fmt.regex(), fullmatch=True).map(functools.partial(as_returned, fmt))


def as_returned(fmt, reply: str) -> str:
    """What the engine hands back: a reply that ends with a stop string loses it."""
    for end in fmt.ends:
        if end and reply.endswith(end):
            return reply[: -len(end)]
    return reply


def normalized(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[:1].upper() + text[1:]


SI_FORMATS = [
    InstructionList(9, 15, ("\n\n", "\n16", "16.", "16 ."), chat=False),
    InstructionList(9, 15, ("\n\n", "\n16", "16.", "16 ."), chat=True),
]


@SETTINGS
@pytest.mark.parametrize("fmt", SI_FORMATS, ids=["completion", "chat"])
@given(items=st.lists(INSTRUCTION, min_size=1, max_size=8))
def test_instruction_lists_parse_back(fmt, items):
    reply = fmt.render(items)
    check_engine_grammar(fmt, reply)
    assume(fmt.matches(reply))
    assert len(items) <= 7
    parsed = fmt.parse(reply)
    assert parsed.problems == []
    assert parsed.instructions == [normalized(i) for i in items]


@SETTINGS
@pytest.mark.parametrize("fmt", SI_FORMATS, ids=["completion", "chat"])
@given(data=st.data())
def test_any_instruction_list_the_grammar_allows_parses(fmt, data):
    reply = data.draw(replies(fmt))
    parsed = fmt.parse(reply)
    assert parsed.problems == []
    assert len(parsed.instructions) == reply.count("\n") + 1 <= 7


@SETTINGS
@pytest.mark.parametrize("classification", [False, True], ids=["input-first", "output-first"])
@given(
    pairs=st.lists(st.tuples(FIELD_TEXT, FIELD_TEXT), min_size=1, max_size=6),
    bare=st.booleans(),
    sep=st.sampled_from(["", " ", "\n"]),
)
def test_instances_parse_back(classification, pairs, bare, sep):
    fmt = Instances(classification, 5, ("Task:", "Example 6"))
    if classification:  # the output is the class label, one line
        pairs = [(given, label.replace("\n", " ")) for given, label in pairs]
    elif bare:
        pairs = [("", pairs[0][1])]
    reply = fmt.render(pairs, bare=bare and not classification, sep=sep)
    check_engine_grammar(fmt, reply)
    assume(fmt.matches(reply))
    parsed = fmt.parse(reply, "stop")
    assert parsed.problems == []
    assert [(i.input, i.output) for i in parsed.instances] == [(g.strip(), o.strip()) for g, o in pairs]


@SETTINGS
@pytest.mark.parametrize("classification", [False, True], ids=["input-first", "output-first"])
@given(data=st.data())
def test_any_instances_the_grammar_allows_parse(classification, data):
    fmt = Instances(classification, 3, ("Task:", "Example 4"))
    reply = data.draw(replies(fmt))
    parsed = fmt.parse(reply, "stop")
    assert parsed.problems == []
    heads = reply.count("Class label:") if classification else max(1, reply.count("Example"))
    assert len(parsed.instances) == heads <= 3
    assert all(i.output.strip() for i in parsed.instances)


ALPACA_FORMATS = [
    AlpacaList(4, 19, ("\n20", "20."), chat=False),
    AlpacaList(4, 19, ("\n20", "20."), chat=True),
]


@SETTINGS
@pytest.mark.parametrize("fmt", ALPACA_FORMATS, ids=["completion", "chat"])
@given(
    items=st.lists(
        st.tuples(INSTRUCTION, FIELD_TEXT | st.just(NO_INPUT), FIELD_TEXT), min_size=1, max_size=5
    ),
    closed=st.booleans(),
)
def test_alpaca_items_parse_back(fmt, items, closed):
    reply = fmt.render(items, closed=closed)
    check_engine_grammar(fmt, reply)
    assume(fmt.matches(reply))
    parsed = fmt.parse(reply, "stop")
    assert parsed.problems == []
    expected = [
        (normalized(i), "" if g.strip().lower() == NO_INPUT else g.strip(), o.strip()) for i, g, o in items
    ]
    assert [(x.instruction, x.input, x.output) for x in parsed.items] == expected


@SETTINGS
@given(data=st.data())
def test_any_alpaca_reply_the_grammar_allows_parses(data):
    fmt = AlpacaList(4, 5, ("\n20", "20."))
    reply = data.draw(replies(fmt))
    parsed = fmt.parse(reply, "stop")
    assert parsed.problems == []
    assert len(parsed.items) == reply.count("Instruction:") + 1 <= 2  # the first label is the prompt's


@SETTINGS
@given(
    items=st.lists(st.tuples(INSTRUCTION, FIELD_TEXT, FIELD_TEXT), min_size=1, max_size=5),
    cut=st.floats(0.0, 1.0),
)
def test_a_cut_alpaca_reply_loses_only_its_last_item(items, cut):
    fmt = AlpacaList(4, 19, ("\n20", "20."))
    reply = fmt.render(items)
    assume(fmt.matches(reply))
    whole = fmt.parse(reply, "stop").items
    text = reply[: max(1, int(len(reply) * cut))]
    parsed = fmt.parse(text, "length")
    kept = [(x.instruction, x.input, x.output) for x in parsed.items if not x.truncated]
    assert kept == [(x.instruction, x.input, x.output) for x in whole[: len(kept)]]
    assert len(kept) >= text.count("###")  # every item closed before the cut is whole
    if text.strip():  # (a reply cut to nothing is an empty reply)
        assert all(TRUNCATED in p.codes for p in parsed.problems)


def test_replies_may_end_at_a_stop_string_but_never_contain_one():
    fmt = InstructionList(9, 15, ("\n\n", "\n16", "16.", "16 ."))
    assert fmt.matches(" Write a poem.\n10. Plan a trip.")
    assert re.fullmatch(fmt.regex(), " Write a poem.\n10. Plan a trip.\n\n")  # the engine cuts "\n\n" off
    assert not fmt.matches(" Write a poem.\n\n10. Plan a trip.")
    assert not fmt.matches(" Count to 16. Then stop.")
    assert not fmt.matches(" " + "\n".join(f"{k}. Task {k}" for k in range(9, 17))[3:])  # item 16
    assert terminators(("Task:", "\n\n")) == ("\n\n", "\nTask:")
    inst = Instances(False, 5, ("Task:", "Example 6"))
    assert re.fullmatch(inst.regex(), "Output: Sleep well.\n\nTask:")
    assert not inst.matches("Output: Sleep well. Task: nap")


def test_the_recipes_numbers_come_from_the_stop_strings():
    config = GenerateConfig()
    formats = RunFormats.from_config(config)
    assert (formats.instructions.first, formats.instructions.last) == (9, 15)
    alpaca = RunFormats.from_config(GenerateConfig(method="alpaca")).alpaca
    assert (alpaca.first, alpaca.last) == (4, 19)
    assert (
        last_item(4, ["\n12"], 19) == 11 and last_item(4, [], 19) == 19 and last_item(18, ["\n16"], 15) == 18
    )
    chat = RunFormats.from_config(GenerateConfig(prompt_style="chat"))
    assert chat.instructions.chat and chat.classify.choices() == ("Yes", "No")
    assert formats.classify.choices() == (" Yes", " No")
    assert formats.instances_gen.stop[-1] == "Example 6"


def test_classification_answer_is_a_choice():
    fmt = Classification(("\n", "Task"))
    assert fmt.structured() == Structured(choice=(" Yes", " No"))
    assert fmt.parse(" Yes") is Label.YES and fmt.parse(" No") is Label.NO
    with pytest.raises(UserError, match="stop string"):
        Classification(("Y",)).structured()


def test_a_stop_string_inside_the_layout_is_refused():
    with pytest.raises(UserError, match=r"stop string '\\n1'"):
        InstructionList(9, 15, ("\n1",)).structured()


def test_grammar_writes_each_field_once():
    fmt = AlpacaList(4, 19, ("\n20", "20."))
    grammar = fmt.grammar()
    rules = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert len(rules) == len(set(rules))
    assert len(grammar) < 20_000 < len(fmt.regex())
    assert {r.split("_")[0] for r in rules if r != "root"} == {"f1", "f2"}  # instruction; input and output
    assert render_ebnf(field(["ab"], allowed=CharSet.excluding("\n"))).startswith("root ::= f1\n")


def test_unconstrained_requests_keep_their_cache_identity():
    plain = SamplingParams(seed=3)
    assert "structured" not in plain.model_dump(mode="json")
    held = SamplingParams(seed=3, structured=Structured(grammar="root ::= [a-z]*\n"))
    assert held.model_dump(mode="json")["structured"]["grammar"] == "root ::= [a-z]*\n"
    with pytest.raises(ValueError, match="exactly one"):
        Structured(regex="a", choice=("a",))
    assert Structured(choice=("Yes", "No")).as_vllm() == {"choice": ["Yes", "No"]}
