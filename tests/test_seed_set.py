"""The quality rules of our own seed set, checked over seeds/seed_tasks.jsonl itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.quality.rouge import max_against, max_pairwise
from pipeline.run.seeds import default_seeds_path, load_seeds

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="module")
def seeds():
    return load_seeds(default_seeds_path())


@pytest.fixture(scope="module")
def instructions(seeds):
    return [s.instruction for s in seeds]


def reference_instructions(name: str) -> list[str]:
    from pipeline.core.jsonio import iter_jsonl

    return [row["instruction"] for _, row in iter_jsonl(SHARED / name)]


def test_175_tasks_with_sequential_ids_and_snake_case_names(seeds):
    assert len(seeds) == 175
    assert [s.id for s in seeds] == [f"seed_task_{n}" for n in range(175)]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", s.name) for s in seeds)


def test_enough_classification_tasks_and_inputs(seeds):
    assert sum(s.is_classification for s in seeds) >= 25
    with_input = sum(any(i.input.strip() for i in s.instances) for s in seeds)
    assert with_input / len(seeds) >= 0.40


def test_instruction_lengths(instructions):
    words = [len(text.split()) for text in instructions]
    assert min(words) >= 3 and max(words) <= 150


def test_classification_outputs_are_labels(seeds):
    for task in seeds:
        if task.is_classification:
            for inst in task.instances:
                assert len(inst.output.split()) <= 6, (task.id, inst.output)


def test_no_two_seeds_too_similar(instructions):
    score, i, j = max_pairwise(instructions)
    assert score <= 0.7, (score, instructions[i], instructions[j])


@pytest.mark.parametrize("reference", ["self_instruct_seed_tasks.jsonl", "user_oriented_instructions.jsonl"])
def test_not_copied_from_reference_sets(instructions, reference):
    score, i, j = max_against(instructions, reference_instructions(reference))
    assert score < 0.5, (score, instructions[i])


def test_many_kinds_of_work(instructions):
    first_words = {text.split()[0].lower().strip(",.:") for text in instructions}
    assert len(first_words) >= 30
