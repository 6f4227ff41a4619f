"""Prompt building: the seed/pool mix, the layouts of both recipes, templates and request seeds."""

from __future__ import annotations

import random
import re

import pytest

from pipeline.core.errors import UserError
from pipeline.generate.config import Decoding, TemplatePaths
from pipeline.generate.prompts import (
    CLASSIFY_SUFFIX,
    TEMPLATE_DIR,
    TEMPLATE_NAMES,
    PromptTask,
    alpaca_prompt,
    classify_prompt,
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
    text = self_instruct_prompt("Header line:\n", tasks)
    lines = text.split("\n")
    assert lines[0] == "Header line:"
    assert lines[1:9] == [f"{k + 1}. Task number {k}" for k in range(8)]  # whitespace collapsed, colon gone
    assert lines[9] == "9."
    assert text.endswith("\n9.")


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


def test_classify_and_instance_prompts_append_the_task():
    assert (
        classify_prompt("Few shot.\n\nTask:", "  Is 7 prime? ")
        == "Few shot.\n\nTask: Is 7 prime?" + CLASSIFY_SUFFIX
    )
    assert instances_prompt("Examples.\n\nTask:", "Sort the list.") == "Examples.\n\nTask: Sort the list.\n"


def test_bundled_templates_end_where_the_code_continues():
    t = load_templates()
    assert set(t.texts) == set(TEMPLATE_NAMES)
    for name in ("classify", "instances_clf", "instances_gen"):
        assert t[name].rstrip().endswith("Task:"), name
    assert t["alpaca"].endswith("List of 20 tasks:\n")
    assert "20" in t["alpaca"]
    # The few-shot examples follow the formats the parsers read.
    assert t["classify"].count("Is it classification? Yes") >= 5
    assert t["classify"].count("Is it classification? No") >= 5
    assert "Class label:" in t["instances_clf"]
    assert re.search(r"Example 1\n.*\nOutput:", t["instances_gen"])


def test_user_template_replaces_the_bundled_one(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("My own list of tasks:\n")
    t = load_templates(TemplatePaths(instructions=str(mine)))
    assert t["instructions"] == "My own list of tasks:\n"
    assert t.sources["instructions"] == str(mine)
    assert t.digests()["instructions"] != load_templates().digests()["instructions"]
    assert t["classify"] == (TEMPLATE_DIR / "classify.txt").read_text()
    with pytest.raises(UserError, match="templates.classify: no such template file"):
        load_templates(TemplatePaths(classify=str(tmp_path / "missing.txt")))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(UserError, match="empty"):
        load_templates(TemplatePaths(alpaca=str(tmp_path / "empty.txt")))


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
