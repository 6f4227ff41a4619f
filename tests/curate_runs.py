"""Constructed runs for the curation tests: topics of known sizes, written by the run's own writer."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.jsonio import append_jsonl
from pipeline.core.yamlconfig import dump_config
from pipeline.generate.config import GenerateConfig
from pipeline.run.rundir import RunDir
from pipeline.run.schemas import Instance, MachineTask, SeedTask, TeacherIdentity
from pipeline.run.state import RunState
from pipeline.run.summary import RunSummary

TEACHER = TeacherIdentity(backend="openai", model="constructed", fingerprint="none")

# One topic dominates (80% of the tasks); four others are small.
COOKING = [
    f"Give a recipe for {dish} that uses {extra}."
    for dish in (
        "pancakes",
        "lentil soup",
        "banana bread",
        "fried rice",
        "a tomato salad",
        "pumpkin pie",
        "vegetable curry",
        "scrambled eggs",
        "apple crumble",
        "mushroom risotto",
    )
    for extra in (
        "garlic",
        "fresh herbs",
        "brown sugar",
        "leftover rice",
        "lemon zest",
        "cheddar cheese",
        "smoked paprika",
        "coconut milk",
    )
]
SMALL_TOPICS = {
    "math": [
        f"Solve the equation {a}x + {b} = {c} for x."
        for a, b, c in ((2, 3, 11), (5, 1, 26), (3, 7, 22), (4, 9, 1), (7, 2, 30))
    ],
    "translation": [
        f"Translate the phrase '{p}' into Spanish."
        for p in (
            "good morning",
            "where is the station",
            "thank you very much",
            "I am hungry",
            "see you tomorrow",
        )
    ],
    "code": [
        f"Write a Python function that {does}."
        for does in (
            "reverses a list",
            "counts the vowels in a string",
            "checks whether a number is prime",
            "merges two sorted lists",
            "removes duplicates from a list",
        )
    ],
    "poetry": [
        f"Write a short poem about {thing}."
        for thing in (
            "the sea at night",
            "city rain",
            "the first snow",
            "an old lighthouse",
            "a forgetful owl",
        )
    ],
}


def topic_tasks() -> list[tuple[str, str]]:
    """(topic, instruction), the big topic first."""
    rows = [("cooking", text) for text in COOKING]
    rows += [(topic, text) for topic, texts in SMALL_TOPICS.items() for text in texts]
    return rows


def write_topic_run(
    run_dir: Path, seeds_path: Path, rows: list[tuple[str, str]] | None = None
) -> dict[str, str]:
    """A one-round run of `rows` (default: `topic_tasks()`); returns {task id: topic}."""
    rows = rows if rows is not None else topic_tasks()
    append_jsonl(
        seeds_path,
        [
            SeedTask(
                id="seed_task_0",
                name="seed_0",
                instruction="Suggest a name for a small bookshop by the river.",
                instances=[Instance(input="", output="Riverside Pages")],
                is_classification=False,
            )
        ],
    )
    run = RunDir(run_dir)
    run.path.mkdir(parents=True)
    run.write_config(dump_config(GenerateConfig(seeds=str(seeds_path), rounds=1)))
    tasks = [
        MachineTask(
            id=f"r0001-{k:04d}",
            instruction=text,
            instances=[Instance(input="", output=f"An answer to task {k}.")],
            is_classification=False,
            round=1,
            method="self-instruct",
            teacher=TEACHER,
            prompt_ids=["seed_task_0"],
            most_similar={},
            avg_similarity=0.0,
            created_at=1_700_000_000.0 + k,
        )
        for k, (_, text) in enumerate(rows)
    ]
    append_jsonl(run.tasks_path, tasks)
    state = RunState(rounds_done=1, kept_total=len(tasks), teacher=TEACHER)
    run.write_state(state)
    run.write_summary(
        RunSummary.from_state(
            state, method="self-instruct", seeds_path=str(seeds_path), seeds_count=1, teacher=TEACHER
        )
    )
    return {t.id: topic for t, (topic, _) in zip(tasks, rows, strict=True)}
