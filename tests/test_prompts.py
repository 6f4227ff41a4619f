"""Prompt building: the seed/pool mix, the layouts of both recipes, templates and request seeds."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest

from pipeline.core.errors import InputFileError, UserError
from pipeline.generate.config import Decoding, TemplatePaths
from pipeline.generate.prompts import (
    CLASSIFY_SUFFIX,
    FEW_SHOT_TEMPLATES,
    TEMPLATE_DIR,
    TEMPLATE_NAMES,
    PromptTask,
    alpaca_prompt,
    answer_prompt,
    classify_prompt,
    evolve_prompt,
    instances_prompt,
    load_templates,
    make_request,
    request_seed,
    sample_alpaca,
    sample_self_instruct,
    self_instruct_prompt,
)
from pipeline.run.schemas import Instance, MachineTask, SeedTask, TeacherIdentity

TOPICS = [
    "rivers",
    "poems",
    "budgets",
    "recipes",
    "planets",
    "emails",
    "idioms",
    "sorting",
    "chess",
    "tides",
    "verbs",
    "maps of cities",
    "taxes",
    "birds",
    "clocks",
    "bridges",
]


def seeds(n: int = 16) -> list[SeedTask]:
    return [
        SeedTask(
            id=f"seed_{k}",
            name=f"task_{k}",
            instruction=f"Explain something useful about {TOPICS[k % len(TOPICS)]} to a beginner, case {k}:",
            instances=[Instance(input="" if k % 2 else f"context {k}", output=f"answer {k}")],
            is_classification=k % 3 == 0,
        )
        for k in range(n)
    ]


def pool(n: int) -> list[MachineTask]:
    ident = TeacherIdentity(backend="openai", model="m")
    return [
        MachineTask(
            id=f"r0001-{k:04d}",
            instruction=f"Machine task number {k} about {TOPICS[k]}",
            instances=[Instance(output="x")],
            is_classification=False,
            round=1,
            method="self-instruct",
            teacher=ident,
        )
        for k in range(n)
    ]


@pytest.mark.parametrize(("pool_size", "machine"), [(0, 0), (1, 1), (2, 2), (9, 2)])
def test_self_instruct_mix_is_six_seeds_and_two_machine(pool_size: int, machine: int):
    picked = sample_self_instruct(random.Random(1), seeds(), pool(pool_size), total=8, machine=2)
    assert len(picked) == 8
    assert len({p.id for p in picked}) == 8
    assert sum(p.id.startswith("r0001-") for p in picked) == machine
    assert sum(p.id.startswith("seed_") for p in picked) == 8 - machine


def test_sampling_is_reproducible_from_the_rng_state():
    rng = random.Random(7)
    state = rng.getstate()
    first = [p.id for p in sample_self_instruct(rng, seeds(), pool(5))]
    rng.setstate(state)
    assert [p.id for p in sample_self_instruct(rng, seeds(), pool(5))] == first
    # Shuffled: the machine tasks are not always in the same places.
    positions = {
        tuple(
            i
            for i, p in enumerate(sample_self_instruct(random.Random(s), seeds(), pool(5)))
            if p.id.startswith("r")
        )
        for s in range(20)
    }
    assert len(positions) > 1


def test_self_instruct_prompt_layout():
    tasks = [PromptTask(f"s{k}", f"Task   number\n{k}:") for k in range(8)]
    expected = "Header line:\n" + "".join(f"{k + 1}. Task number {k}\n" for k in range(8)) + "9."
    # Whitespace collapsed and the colon gone in every item; the list starts on the line after the
    # header, whatever whitespace the header ends with.
    for header in ("Header line:", "Header line:\n", "Header line:\n\n", "Header line:  \n \n"):
        assert self_instruct_prompt(header, tasks) == expected


def test_alpaca_prompt_layout():
    tasks = [
        PromptTask("a", "Add the two numbers:", " 2 and 3\n", "5\n"),
        PromptTask("b", "Name a   colour.", "", "Blue."),
        PromptTask("c", "Sort the words.", "pear, apple", "apple, pear"),
    ]
    expected = (
        "Rules.\nList of 20 tasks:\n\n"
        "###\n1. Instruction: Add the two numbers\n1. Input:\n2 and 3\n1. Output:\n5\n"
        "###\n2. Instruction: Name a colour.\n2. Input:\n<noinput>\n2. Output:\nBlue.\n"
        "###\n3. Instruction: Sort the words.\n3. Input:\npear, apple\n3. Output:\napple, pear\n"
        "###\n4. Instruction:"
    )
    for header in (
        "Rules.\nList of 20 tasks:",
        "Rules.\nList of 20 tasks:\n",
        "Rules.\nList of 20 tasks:\n\n",
    ):
        assert alpaca_prompt(header, tasks) == expected


def test_alpaca_prompt_shows_three_seed_tasks():
    picked = sample_alpaca(random.Random(3), seeds(), 3)
    assert len(picked) == 3 and len({p.id for p in picked}) == 3
    text = alpaca_prompt("Rules.\nList of 20 tasks:\n", picked)
    assert text.startswith("Rules.\nList of 20 tasks:\n\n###\n1. Instruction: ")
    assert text.endswith("###\n4. Instruction:")
    assert text.count("###") == 4
    for k, task in enumerate(picked, start=1):
        shown = task.input if task.input else "<noinput>"
        assert f"{k}. Input:\n{shown}\n{k}. Output:\n{task.output}\n" in text


INSTRUCTION = "Is 7 a prime number?"


def _blocks(prompt: str) -> tuple[list[str], str]:
    """The few-shot examples of a rendered prompt (after its header) and the new task's block."""
    blocks = prompt.split("\n\n")
    return blocks[1:-1], blocks[-1]


@pytest.mark.parametrize(
    "template", ["Few shot.\n\nTask:", "Few shot.\n\nTask:\n", "Few shot.\n\nTask: \n\n"]
)
def test_classify_and_instance_prompts_put_the_task_on_the_label_line(template: str):
    assert classify_prompt(template, "  Is 7\nprime? ") == "Few shot.\n\nTask: Is 7 prime?" + CLASSIFY_SUFFIX
    assert instances_prompt(template, "Sort the list.") == "Few shot.\n\nTask: Sort the list.\n"


def test_classify_prompt_reads_like_its_examples():
    examples, new = _blocks(classify_prompt(load_templates()["classify"], INSTRUCTION))
    assert len(examples) >= 10
    for block in examples:
        assert re.fullmatch(r"Task: \S[^\n]*\S\nIs it classification\? (Yes|No)", block), block
    # The new task is an example without its answer: same label line, same question line.
    assert new == f"Task: {INSTRUCTION}\nIs it classification?"


@pytest.mark.parametrize("name", ["instances_clf", "instances_gen"])
def test_instance_prompts_read_like_their_examples(name: str):
    examples, new = _blocks(instances_prompt(load_templates()[name], INSTRUCTION))
    assert len(examples) >= 5
    for block in examples:
        assert re.match(r"Task: \S[^\n]*\S\n\S", block), block
    # The new task ends where each example's instances begin.
    assert new == f"Task: {INSTRUCTION}\n"


def test_bundled_templates_end_where_the_code_continues():
    t = load_templates()
    assert set(t.texts) == set(TEMPLATE_NAMES)
    assert all(text == text.rstrip() for text in t.texts.values())
    for name in FEW_SHOT_TEMPLATES:
        assert t[name].endswith("\n\nTask:"), name
    assert t["alpaca"].endswith("List of 20 tasks:")
    assert "20" in t["alpaca"]
    # The few-shot examples follow the formats the parsers read.
    assert t["classify"].count("Is it classification? Yes") >= 5
    assert t["classify"].count("Is it classification? No") >= 5
    assert "Class label:" in t["instances_clf"]
    assert re.search(r"Example 1\n.*\nOutput:", t["instances_gen"])


@pytest.mark.parametrize("ending", ["", "\n", "\n\n", "  \n\t\n"])
def test_a_users_template_gives_the_same_prompts_with_or_without_a_final_newline(tmp_path, ending: str):
    bundled = load_templates()
    paths = {}
    for name in TEMPLATE_NAMES:
        path = tmp_path / f"{name}.txt"
        path.write_text((TEMPLATE_DIR / f"{name}.txt").read_text().rstrip() + ending)
        paths[name] = str(path)
    mine = load_templates(TemplatePaths(**paths))
    assert mine.texts == bundled.texts and mine.digests() == bundled.digests()
    tasks = [PromptTask(f"s{k}", f"Task number {k}", f"in {k}", f"out {k}") for k in range(8)]
    for name in ("instructions", "instructions_clf"):
        assert self_instruct_prompt(mine[name], tasks) == self_instruct_prompt(bundled[name], tasks)
    assert alpaca_prompt(mine["alpaca"], tasks[:3]) == alpaca_prompt(bundled["alpaca"], tasks[:3])
    assert classify_prompt(mine["classify"], INSTRUCTION).endswith(
        f"\n\nTask: {INSTRUCTION}{CLASSIFY_SUFFIX}"
    )
    for name in ("instances_clf", "instances_gen"):
        assert instances_prompt(mine[name], INSTRUCTION).endswith(f"\n\nTask: {INSTRUCTION}\n")


def test_user_template_replaces_the_bundled_one(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("My own list of tasks:\n")
    t = load_templates(TemplatePaths(instructions=str(mine)))
    assert t["instructions"] == "My own list of tasks:"
    assert t.sources["instructions"] == str(mine)
    assert t.digests()["instructions"] != load_templates().digests()["instructions"]
    assert t["classify"] == (TEMPLATE_DIR / "classify.txt").read_text().rstrip()
    with pytest.raises(UserError, match="templates.classify: no such template file"):
        load_templates(TemplatePaths(classify=str(tmp_path / "missing.txt")))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(UserError, match="empty"):
        load_templates(TemplatePaths(alpaca=str(tmp_path / "empty.txt")))


def test_a_few_shot_template_that_would_break_the_pattern_is_refused(tmp_path):
    no_label = tmp_path / "no_label.txt"
    no_label.write_text("Decide.\n\nTask: Translate the text.\nIs it classification? No\n")
    with pytest.raises(
        InputFileError, match=r"(?s)no_label\.txt \(templates\.classify\).*line 4: .*end with the label"
    ):
        load_templates(TemplatePaths(classify=str(no_label)))
    split = tmp_path / "split.txt"
    split.write_text(
        "Write examples.\n\nTask:\nSort the list.\nOutput: 1, 2\n\nTask: Name a colour.\nOutput: Blue\n\nTask:"
    )
    with pytest.raises(
        InputFileError, match=r"(?s)split\.txt \(templates\.instances_gen\).*line 3: 'Task:' has no"
    ):
        load_templates(TemplatePaths(instances_gen=str(split)))


def test_requests_in_both_styles():
    dec = Decoding(temperature=0.7, top_p=0.5, max_tokens=1024, presence_penalty=2.0, stop=["\n\n"])
    req = make_request("1. a\n2.", "completion", dec, seed=11)
    assert req.prompt == "1. a\n2." and req.messages is None
    assert req.params.seed == 11 and req.params.top_p == 0.5 and req.params.stop == ["\n\n"]
    chat = make_request("1. a\n2.", "chat", dec, seed=11, max_tokens=300)
    assert chat.messages == [{"role": "user", "content": "1. a\n2."}]
    assert chat.params.max_tokens == 300 and chat.params.presence_penalty == 2.0


def test_request_seeds_are_stable_and_distinct():
    a = request_seed(42, 3, "instructions", 5)
    assert a == request_seed(42, 3, "instructions", 5)
    others = {
        request_seed(42, 3, "instructions", 6),
        request_seed(42, 4, "instructions", 5),
        request_seed(43, 3, "instructions", 5),
        request_seed(42, 3, "classify", 5),
    }
    assert a not in others and len(others) == 4
    assert 0 <= a < 2**31


# -- golden files: every bundled template's prompts, byte for byte ---------------------------------------
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = "SELFINSTRUCT_UPDATE_GOLDEN"  # =1 rewrites the files (see tests/golden/README.md)

GOLDEN_SEEDS = [
    SeedTask(
        id=f"seed_{k}",
        name=f"golden_{k}",
        instruction=instruction,
        instances=[Instance(input=given, output=output)],
        is_classification=clf,
    )
    for k, (instruction, given, output, clf) in enumerate(
        [
            ("Suggest a name for a  small bakery by the sea.", "", "The Salty Crust", False),
            (
                "Decide whether the review is positive or negative:",
                "Cold soup, rude waiter.",
                "Negative",
                True,
            ),
            (
                "Convert the temperature from Celsius to Fahrenheit.",
                "25 degrees Celsius",
                "77 degrees F",
                False,
            ),
            ("Explain why the sky\nlooks blue at noon.", "", "Air scatters blue light the most.", False),
            ("Tell me which of the two animals is larger.", "a mouse, a horse\n", "a horse", True),
            (
                "Write a two-line poem about autumn rain.",
                "",
                "Grey drops tap the glass,\nleaves sink.",
                False,
            ),
            ("Identify the part of speech of the word in capitals.", "She RAN home.", "Verb", True),
            ("List three things to pack for a day hike.", "", "Water, a map and a warm layer.", False),
            (
                "Rewrite the sentence in the passive voice.",
                "The cat chased the ball.",
                "The ball was chased.",
                False,
            ),
            ("Is the number even or odd?", "17", "Odd", True),
        ]
    )
]
GOLDEN_POOL = [
    MachineTask(
        id=f"r0001-{k:04d}",
        instruction=instruction,
        instances=[Instance(output="x")],
        is_classification=False,
        round=1,
        method="self-instruct",
        teacher=TeacherIdentity(backend="openai", model="m"),
    )
    for k, instruction in enumerate(
        [
            "Plan a three-course dinner for a friend who eats no meat.",
            "Summarize the plot of a famous novel in two sentences.",
            "Give me five tips for keeping houseplants alive in winter.",
        ]
    )
]


def golden_prompts() -> dict[str, str]:
    """File name -> exact content: each bundled template rendered in both styles, from fixed inputs."""
    t = load_templates()
    shown = sample_self_instruct(random.Random(42), GOLDEN_SEEDS, GOLDEN_POOL, total=8, machine=2)
    texts = {
        "instructions": self_instruct_prompt(t["instructions"], shown),
        "instructions_clf": self_instruct_prompt(t["instructions_clf"], shown),
        "classify": classify_prompt(t["classify"], INSTRUCTION),
        "instances_clf": instances_prompt(t["instances_clf"], INSTRUCTION),
        "instances_gen": instances_prompt(t["instances_gen"], INSTRUCTION),
        "alpaca": alpaca_prompt(t["alpaca"], sample_alpaca(random.Random(42), GOLDEN_SEEDS, 3)),
        **{
            f"evolve_{op}": evolve_prompt(t[f"evolve_{op}"], op, INSTRUCTION)
            for op in ("constraints", "deepen", "concretize", "reasoning", "input", "breadth")
        },
        # in chat style the answer request is the task alone (`answer_prompt`); the template is completion's
        "answer": answer_prompt(t["answer"], INSTRUCTION, "completion"),
    }
    assert set(texts) == set(TEMPLATE_NAMES)
    files: dict[str, str] = {}
    for name, text in texts.items():
        completion = make_request(text, "completion", Decoding(), seed=0)
        chat = make_request(text, "chat", Decoding(), seed=0)
        assert completion.prompt is not None and chat.messages is not None
        files[f"{name}.completion.txt"] = completion.prompt
        files[f"{name}.chat.json"] = json.dumps(chat.messages, indent=2, ensure_ascii=False) + "\n"
    return files


def test_prompts_match_the_golden_files():
    files = golden_prompts()
    if os.environ.get(UPDATE_GOLDEN) == "1":
        for stale in GOLDEN_DIR.glob("*.*"):
            if stale.suffix in (".txt", ".json") and stale.name not in files:
                stale.unlink()
        for name, text in files.items():
            (GOLDEN_DIR / name).write_bytes(text.encode("utf-8"))
    on_disk = {p.name for p in GOLDEN_DIR.iterdir() if p.suffix in (".txt", ".json")}
    assert on_disk == set(files), (
        f"golden files differ from the bundled templates; rerun with {UPDATE_GOLDEN}=1"
    )
    for name, text in files.items():
        assert (GOLDEN_DIR / name).read_bytes() == text.encode("utf-8"), (
            f"tests/golden/{name}: the rendered prompt changed; if that is intended, rerun with "
            f"{UPDATE_GOLDEN}=1 and review the diff"
        )
