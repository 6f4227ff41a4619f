"""Generation rounds end to end against a real HTTP teacher, kills included.

The teacher here is a small real HTTP server speaking the OpenAI completions/chat API (the outside
world our `openai` backend talks to), answering deterministically from (prompt, seed) with replies
shaped like a model's: numbered task lists, yes/no labels, instances, Alpaca items, plus the
failure modes a real teacher has (cut-off replies, blacklisted words, copies of seeds, empty
outputs, garbage). It counts every request it receives per API key, so a test can prove that a
resumed run never asked anything twice. Everything else is our real code: the teacher backend and
its cache, parsing, filters, dedup, rounds, run directory and CLI.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml
from crashing_cli import CRASH_EXIT_CODE, generate_cli
from openai_fakes import (
    SEED_TEXTS,
    FakeServer,
    completion,
    error,
    read_request,
    run_settings,
    send_json,
    write_seeds,
)

from pipeline.core.errors import UserError
from pipeline.core.jsonio import iter_jsonl
from pipeline.generate.config import GenerateConfig
from pipeline.generate.progress import LineProgress
from pipeline.generate.prompts import CLASSIFY_SUFFIX
from pipeline.generate.protocol import run_generation
from pipeline.quality.filters import check_instruction, filter_instances
from pipeline.quality.rouge import rouge_l
from pipeline.run.reader import Run
from pipeline.run.rundir import TASK_STAGES, RunDir

REPO = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)]


VERBS = [
    "Describe",
    "Explain",
    "Summarize",
    "List",
    "Compare",
    "Classify",
    "Suggest",
    "Outline",
    "Rank",
    "Evaluate",
    "Critique",
    "Predict",
    "Invent",
    "Plan",
    "Sketch out",
    "Contrast",
]
ADJS = [
    "ancient",
    "urban",
    "coastal",
    "digital",
    "seasonal",
    "musical",
    "rural",
    "financial",
    "medical",
    "legal",
    "culinary",
    "arctic",
    "tropical",
    "nautical",
    "academic",
    "athletic",
    "domestic",
    "lunar",
]
NOUNS = [
    "bridges",
    "markets",
    "recipes",
    "forests",
    "festivals",
    "contracts",
    "engines",
    "gardens",
    "museums",
    "harbors",
    "libraries",
    "elections",
    "vaccines",
    "satellites",
    "orchestras",
    "railways",
    "deserts",
    "glaciers",
    "bakeries",
    "factories",
    "volcanoes",
    "schools",
    "hospitals",
    "languages",
]
PEOPLE = [
    "a child",
    "a tourist",
    "an engineer",
    "a farmer",
    "a nurse",
    "a student",
    "a retiree",
    "a pilot",
    "a chef",
    "a judge",
    "a sailor",
    "a banker",
]


def _long_instruction(rng: random.Random, noun: str) -> str:
    return (
        f"{rng.choice(VERBS)} {rng.randint(2, 9)} {rng.choice(ADJS)} {noun} near "
        f"{rng.choice(NOUNS)} that {rng.choice(PEOPLE)} would {rng.choice(['enjoy', 'fear', 'study', 'build'])}"
    )


def _instruction(rng: random.Random) -> str:
    kind = rng.random()
    noun = rng.choice(NOUNS)
    if kind < 0.08:
        return f"Draw a picture of the {noun}."  # blacklisted word
    if kind < 0.16:
        return f"Do {noun}."  # too short
    return _long_instruction(rng, noun)


def _instances(instruction: str, rng: random.Random, clf: bool) -> str:
    if rng.random() < 0.1:
        return "I am not sure what you mean."  # unreadable: no Example/Output/Class label
    if clf:
        labels = rng.sample(["Alpha", "Beta", "Gamma", "Delta"], rng.randint(2, 3))
        return "".join(
            f"Class label: {lab}\nText: a sample about {rng.choice(NOUNS)} {k}\n"
            for k, lab in enumerate(labels)
        )
    parts = []
    for k in range(rng.randint(1, 3)):
        out = "" if rng.random() < 0.15 else f"An answer about {rng.choice(NOUNS)} number {k}."
        parts.append(f"Example {k + 1}\nTopic: {rng.choice(ADJS)} {rng.choice(NOUNS)}\nOutput: {out}\n")
    return "".join(parts)


# The exact shapes of our prompts. The fake teacher reads a prompt only if it has one of them, and
# answers anything else with HTTP 400, which fails the run: a prompt whose new task does not read like
# the examples before it (say `Task:\n <instruction>` after examples written `Task: <instruction>`)
# cannot slip through. Each few-shot block is `Task: <one line>` and its lines; blocks are separated by
# one blank line; the new task is the last block.
_TASK_LINE = r"Task: \S[^\n]*\S"
_CLASSIFY = re.compile(
    rf"(?s)[^\n].*?\n\n(?:{_TASK_LINE}\nIs it classification\? (?:Yes|No)\n\n)+"
    rf"Task: (?P<task>\S[^\n]*\S){re.escape(CLASSIFY_SUFFIX)}"
)
_INSTANCES = re.compile(
    rf"(?s)[^\n].*?\n\n(?P<examples>(?:{_TASK_LINE}\n(?:[^\n]+\n)+\n)+)Task: (?P<task>\S[^\n]*\S)\n"
)
_ALPACA = re.compile(
    r"(?s)[^\n].*List of 20 tasks:\n\n"
    r"(?P<items>(?:###\n\d+\. Instruction: \S[^\n]*\n\d+\. Input:\n\S.*?\n\d+\. Output:\n\S.*?\n)+)"
    r"###\n(?P<open>\d+)\. Instruction:"
)
_INSTRUCTION_LIST = re.compile(r"(?s)[^\n].*?\S\n(?P<items>(?:\d+\. \S[^\n]*\n)+)(?P<open>\d+)\.")


class MalformedPrompt(ValueError):
    """A prompt not in the exact shape of any of ours."""


def _numbered_in_order(numbers: list[int], open_number: int) -> None:
    if numbers != list(range(1, len(numbers) + 1)) or open_number != len(numbers) + 1:
        raise MalformedPrompt(f"items numbered {numbers}, then {open_number}")


def read_prompt(text: str) -> tuple[str, str]:
    """(kind, what the teacher is asked about) for a prompt in one of our exact shapes."""
    if match := _CLASSIFY.fullmatch(text):
        return "classify", match["task"]
    if match := _INSTANCES.fullmatch(text):
        kind = "instances_clf" if "\nClass label: " in match["examples"] else "instances_gen"
        return kind, match["task"]
    if match := _ALPACA.fullmatch(text):
        numbers = [int(n) for n in re.findall(r"###\n(\d+)\. Instruction: ", match["items"])]
        _numbered_in_order(numbers, int(match["open"]))
        return "alpaca", match["open"]
    if match := _INSTRUCTION_LIST.fullmatch(text):
        numbers = [int(n) for n in re.findall(r"^(\d+)\. ", match["items"], re.MULTILINE)]
        _numbered_in_order(numbers, int(match["open"]))
        return "instructions", match["items"]
    raise MalformedPrompt(f"not one of our prompt shapes; it ends {text[-80:]!r}")


def fake_reply(text: str, seed: object, chat: bool, mode: str) -> tuple[str, str]:
    """A deterministic reply to one prompt, shaped like a model's (raises MalformedPrompt)."""
    kind, about = read_prompt(text)
    rng = random.Random(f"{seed}|{text}")
    if mode == "garbage":
        return rng.choice(["", "???", "lorem ipsum dolor", "\n\n"]), "stop"
    if kind == "classify":
        return (" Yes" if "Classify" in about or "Rank" in about else " No"), "stop"
    if kind in ("instances_clf", "instances_gen"):
        return _instances(about, rng, clf=kind == "instances_clf"), "stop"
    if kind == "alpaca":
        start = int(about)
        items = []
        for k in range(rng.randint(1, 4)):
            number = start + k
            given = rng.choice(["<noinput>", f"Some {rng.choice(NOUNS)} facts."])
            output = "" if rng.random() < 0.1 else f"A reply about {rng.choice(NOUNS)}."
            head = " " if k == 0 else f"{number}. Instruction: "
            items.append(
                f"{head}{_instruction(rng)}\n{number}. Input:\n{given}\n{number}. Output:\n{output}\n"
            )
        reply = "###\n".join(items)
        if rng.random() < 0.2:
            return reply + f"###\n{start + len(items)}. Instruction: Write", "length"
        return reply, "stop"
    # An instruction list: continue it from the open number.
    shown = [line.split(". ", 1)[1] for line in about.splitlines()]
    number = len(shown) + 1
    if mode == "cut":
        # Four whole tasks, and a fifth cut off mid-sentence by the length limit.
        items = [_long_instruction(rng, rng.choice(NOUNS)) for _ in range(4)]
        items.append(" ".join(_long_instruction(rng, rng.choice(NOUNS)).split()[:6]))
        finish = "length"
    else:
        # Now and then a copy of a prompt task.
        items = [
            rng.choice(shown) if rng.random() < 0.1 else _instruction(rng) for _ in range(rng.randint(1, 5))
        ]
        finish = "length" if rng.random() < 0.15 else "stop"
    first = f"{number}. {items[0]}" if chat else f" {items[0]}"
    reply = first + "".join(f"\n{number + k}. {item}" for k, item in enumerate(items[1:], start=1))
    return reply, finish


class FakeTeacher(FakeServer):
    def __init__(self, mode: str = "good"):
        super().__init__(_Handler)
        self.mode = mode
        # Out-of-order answers: each reply waits 0-40 ms (drawn from the request), so replies overtake.
        self.shuffle = False
        # A straggler: the very first request is answered only once a classification request arrived
        # (or after 10 s); `held_until_followup` says which happened.
        self.hold_first = False
        self.held_until_followup: bool | None = None
        self.followup_seen = threading.Event()
        self.arrivals = 0
        self.answer_order: list[int] = []  # arrival numbers, in the order the replies were sent


class _Handler(BaseHTTPRequestHandler):
    server: FakeTeacher

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        send_json(self, 200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})

    def do_POST(self) -> None:
        body, chat, text, digest = read_request(self)
        with self.server.lock:
            self.server.calls[(self.headers.get("Authorization", ""), digest)] += 1
            arrival = self.server.arrivals
            self.server.arrivals += 1
        if text.endswith(CLASSIFY_SUFFIX):
            self.server.followup_seen.set()
        if self.server.hold_first and arrival == 0:
            self.server.held_until_followup = self.server.followup_seen.wait(10)
        elif self.server.shuffle:
            time.sleep(int(digest[:2], 16) / 255 * 0.04)
        try:
            reply, finish = fake_reply(text, body.get("seed"), chat, self.server.mode)
        except MalformedPrompt as err:
            send_json(self, 400, error(f"malformed prompt: {err}"))
            return
        with self.server.lock:
            self.server.answer_order.append(arrival)
        send_json(self, 200, completion(body, chat, text, reply, finish))


@contextlib.contextmanager
def serve(mode: str = "good") -> Iterator[FakeTeacher]:
    server = FakeTeacher(mode).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def teacher_server():
    with serve() as server:
        yield server


@pytest.fixture()
def seeds_file(tmp_path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS)


def make_config(server: FakeTeacher, seeds: Path, **changes: object) -> GenerateConfig:
    # The fake knows the recipes' free replies only (constrained runs: tests/test_constrained_run.py).
    settings = {"seeds": str(seeds), "decoding": {"constrained": "off"}, **changes}
    return GenerateConfig(**run_settings(server.url, **settings))


def check_run(run_dir: Path, seeds: list[str]) -> dict:
    """Invariants of any run directory: unique ids, every candidate accounted for, kept tasks clean."""
    run = RunDir(run_dir)
    state = run.read_state()
    tasks = run.read_tasks()
    rejections = run.read_rejections()
    ids = [t.id for t in tasks]
    assert len(ids) == len(set(ids)), "duplicate task ids"
    instructions = [t.instruction for t in tasks]
    assert len(instructions) == len(set(instructions)), "duplicate instructions"
    keys = [r.candidate["key"] for r in rejections]
    assert len(keys) == len(set(keys)), "duplicate rejection keys"
    assert all(t.round <= state.rounds_done for t in tasks)
    assert state.kept_total == len(tasks)
    for row in state.rounds:
        kept = sum(t.round == row["round"] for t in tasks)
        whole = sum(r.round == row["round"] and r.stage in TASK_STAGES for r in rejections)
        assert row["kept"] == kept
        assert row["candidates"] == kept + whole, f"round {row['round']}: a candidate went missing"
    pool = list(seeds)
    for task in tasks:
        assert check_instruction(task.instruction) == []
        kept_inst, dropped = filter_instances(task.instances)
        assert dropped == [] and len(kept_inst) == len(task.instances) >= 1
        assert max(rouge_l(task.instruction, other) for other in pool) <= 0.7
        pool.append(task.instruction)
    summary = json.loads(run.summary_path.read_text())
    assert summary["kept_total"] == len(tasks)
    assert len(summary["rounds"]) == state.rounds_done
    # The reader gives back exactly what the generator wrote: no field lost, renamed or changed.
    assert Run.open(run_dir).summary().model_dump(mode="json") == summary
    return {
        "ids": ids,
        "instructions": instructions,
        "keys": sorted(keys),
        "state": state,
        "summary": summary,
    }


# -- in-process runs ------------------------------------------------------------------------------------
def test_self_instruct_rounds(teacher_server, seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k1")
    config = make_config(teacher_server, seeds_file)
    outcome = run_generation(config, tmp_path / "run")
    result = check_run(tmp_path / "run", SEED_TEXTS)
    assert outcome.rounds_run == 2 and result["state"].rounds_done == 2
    assert result["ids"], "the fake teacher's replies should keep some tasks"
    assert all(i.startswith(("r0001-", "r0002-")) for i in result["ids"])
    tasks = RunDir(tmp_path / "run").read_tasks()
    rejections = RunDir(tmp_path / "run").read_rejections()
    # Prompt mix: 8 seeds in round 1 (empty pool), 6 seeds + 2 pool tasks in round 2.
    pool_after_one = sum(t.round == 1 for t in tasks)
    assert pool_after_one >= 2
    for record in [*tasks, *[r for r in rejections if "prompt_ids" in r.candidate]]:
        shown = record.prompt_ids if hasattr(record, "prompt_ids") else record.candidate["prompt_ids"]
        machine = sum(i.startswith("r0") for i in shown)
        assert len(shown) == 8
        assert machine == (0 if record.round == 1 else 2)
    # The classification path: "Classify..." tasks were labelled yes and got output-first instances.
    for task in tasks:
        clf = "Classify" in task.instruction or "Rank" in task.instruction
        assert task.is_classification == clf
        if clf:
            assert {i.output for i in task.instances} <= {"Alpha", "Beta", "Gamma", "Delta"}
            assert all(i.input.startswith("Text: ") for i in task.instances)
        else:
            assert all(i.input.startswith("Topic: ") for i in task.instances)
    # Every kind of failure the teacher produced is on record with its reason.
    reasons = Counter(code for r in rejections for code in r.reasons)
    for code in ("truncated", "blacklisted_word", "too_short", "rouge_l_duplicate"):
        assert reasons[code] > 0, code
    stages = Counter(r.stage for r in rejections)
    assert stages["instruction"] and stages["dedup"]
    summary = result["summary"]
    assert summary["method"] == "self-instruct"
    assert summary["teacher"]["backend"] == "openai"
    assert summary["seeds"] == {"path": str(seeds_file), "count": len(SEED_TEXTS)}
    assert summary["totals"]["requests"] == sum(r["requests"] for r in summary["rounds"]) > 8
    assert summary["totals"]["rejected_by_reason"] == dict(reasons)
    labels = summary["totals"]["classification"]
    assert labels.get("yes", 0) > 0 and labels.get("no", 0) > 0


def test_a_cut_reply_loses_only_its_last_instruction(seeds_file, tmp_path, monkeypatch):
    """Every instruction-list reply stops on the length limit after four whole tasks and a cut fifth:
    only the fifth is rejected as truncated; the four before it are judged like any other."""
    monkeypatch.setenv("SI_FAKE_KEY", "k-cut")
    with serve("cut") as server:
        run_generation(make_config(server, seeds_file, rounds=1), tmp_path / "run")
    result = check_run(tmp_path / "run", SEED_TEXTS)
    rejections = RunDir(tmp_path / "run").read_rejections()
    truncated = sorted(r.candidate["key"] for r in rejections if "truncated" in r.reasons)
    assert truncated == [f"r0001-q{q:03d}-c04" for q in range(4)]  # batch_size 4: each reply's last item
    assert all(r.stage == "instruction" for r in rejections if "truncated" in r.reasons)
    assert result["state"].rounds[0]["candidates"] == 4 * 5
    others = [r for r in rejections if r.stage in TASK_STAGES and "truncated" not in r.reasons]
    assert result["state"].kept_total + len(others) == 4 * 4
    assert result["state"].kept_total >= 8, "the whole items of a cut reply should mostly be kept"


def test_rerun_grows_the_run_without_asking_again(teacher_server, seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k2")
    config = make_config(teacher_server, seeds_file, rounds=1)
    run_generation(config, tmp_path / "run")
    first = check_run(tmp_path / "run", SEED_TEXTS)
    calls_after_one = sum(teacher_server.calls_for("k2").values())
    outcome = run_generation(config, tmp_path / "run")
    second = check_run(tmp_path / "run", SEED_TEXTS)
    assert second["state"].rounds_done == 2 and outcome.rounds_run == 1
    assert second["ids"][: len(first["ids"])] == first["ids"]
    assert all(n == 1 for n in teacher_server.calls_for("k2").values())
    assert sum(teacher_server.calls_for("k2").values()) > calls_after_one
    # The same run from scratch in another directory (same seed) asks the very same questions.
    monkeypatch.setenv("SI_FAKE_KEY", "k3")
    run_generation(config.model_copy(update={"rounds": 2}), tmp_path / "again")
    assert check_run(tmp_path / "again", SEED_TEXTS)["ids"] == second["ids"]
    assert set(teacher_server.calls_for("k3")) == set(teacher_server.calls_for("k2"))


def test_until_and_the_no_progress_bound(teacher_server, seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k4")
    config = make_config(teacher_server, seeds_file, until=6)
    outcome = run_generation(config, tmp_path / "run")
    assert outcome.stopped is None
    assert outcome.summary is not None and outcome.summary.kept_total >= 6
    # Already there: nothing to do.
    again = run_generation(config, tmp_path / "run")
    assert again.rounds_run == 0
    # A teacher that only talks nonsense: every reply is rejected with a reason, and --until gives up.
    teacher_server.mode = "garbage"
    bad = make_config(teacher_server, seeds_file, until=5, max_rounds_without_progress=3)
    outcome = run_generation(bad, tmp_path / "garbage")
    assert outcome.stopped == "no_progress" and outcome.rounds_run == 3
    rejections = RunDir(tmp_path / "garbage").read_rejections()
    assert len(rejections) == 3 * 4  # one per reply
    assert {r.stage for r in rejections} <= {"parse", "instruction"}
    assert {c for r in rejections for c in r.reasons} <= {
        "parse_empty_reply",
        "too_short",
        "starts_with_punctuation",
    }
    assert all("reply" in r.candidate for r in rejections if r.stage == "parse")


def test_alpaca_rounds(teacher_server, seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k5")
    config = make_config(teacher_server, seeds_file, method="alpaca", rounds=2)
    run_generation(config, tmp_path / "run")
    result = check_run(tmp_path / "run", SEED_TEXTS)
    assert result["ids"]
    tasks = RunDir(tmp_path / "run").read_tasks()
    assert all(len(t.instances) == 1 and len(t.prompt_ids) == 3 and not t.is_classification for t in tasks)
    assert all(all(i.startswith("seed_") for i in t.prompt_ids) for t in tasks)
    assert any(t.instances[0].input == "" for t in tasks) and any(t.instances[0].input for t in tasks)
    reasons = Counter(c for r in RunDir(tmp_path / "run").read_rejections() for c in r.reasons)
    assert reasons["truncated"] > 0 and reasons["empty_output"] > 0
    # Only alpaca-shaped requests were sent: one per prompt, no classification or instance calls.
    assert sum(teacher_server.calls_for("k5").values()) == 8


def test_chat_style_parses_numbered_replies(teacher_server, seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k6")
    config = make_config(teacher_server, seeds_file, prompt_style="chat", rounds=1)
    run_generation(config, tmp_path / "run")
    assert check_run(tmp_path / "run", SEED_TEXTS)["ids"]


def test_changed_config_is_refused_unless_forced(teacher_server, seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k7")
    config = make_config(teacher_server, seeds_file, rounds=1)
    run_generation(config, tmp_path / "run")
    changed = config.model_copy(update={"batch_size": 8, "seed": 7})
    with pytest.raises(UserError) as err:
        run_generation(changed, tmp_path / "run")
    assert "batch_size: 4 -> 8" in str(err.value) and "seed: 42 -> 7" in str(err.value)
    assert "--force" in str(err.value)
    assert RunDir(tmp_path / "run").read_state().rounds_done == 1
    # Run length, server addresses and concurrency may change freely.
    free = config.model_copy(
        update={
            "rounds": 2,
            "teacher": config.teacher.model_copy(
                update={"base_urls": [teacher_server.url, teacher_server.url], "concurrency": 3}
            ),
        }
    )
    run_generation(free, tmp_path / "run")
    assert RunDir(tmp_path / "run").read_state().rounds_done == 3
    # The seeds file's content is part of the config too.
    seeds_file.write_text(seeds_file.read_text().replace("thank-you note", "thank-you card"))
    with pytest.raises(UserError, match=r"fingerprints\.seeds|seeds \(file content changed\)"):
        run_generation(config, tmp_path / "run")
    run_generation(changed, tmp_path / "run", force=True)
    assert RunDir(tmp_path / "run").read_state().rounds_done == 4
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["batch_size"] == 8


# -- pipelined rounds, time budget, progress lines ---------------------------------------------------------
def run_record(run_dir: Path) -> dict:
    """Everything a run decided, timings and gauges left out: kept tasks, rejections in file order, round
    figures. A replica's concurrency limit is a gauge of how the server coped (it follows the configured
    concurrency), not something the run decided."""
    run = RunDir(run_dir)
    timing = {"seconds", "tokens_per_s", "wall_s", "startup_s"}

    def decided(row: dict) -> dict:
        out = {k: v for k, v in row.items() if k not in timing}
        if "replicas" in out:
            out["replicas"] = {
                url: {k: v for k, v in used.items() if k != "concurrency"}
                for url, used in out["replicas"].items()
            }
        return out

    return {
        "tasks": [t.model_dump(exclude={"created_at"}) for t in run.read_tasks()],
        "rejections": [r.model_dump() for r in run.read_rejections()],
        "rounds": [decided(row) for row in run.read_state().rounds],
    }


def with_concurrency(config: GenerateConfig, concurrency: int) -> GenerateConfig:
    return config.model_copy(
        update={"teacher": config.teacher.model_copy(update={"concurrency": concurrency})}
    )


def test_out_of_order_answers_give_the_same_run_as_in_order_ones(
    teacher_server, seeds_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("SI_FAKE_KEY", "in-order")
    in_order = make_config(teacher_server, seeds_file, rounds=3)  # concurrency 1: answered as asked
    run_generation(in_order, tmp_path / "in-order")
    expected = run_record(tmp_path / "in-order")
    assert expected["tasks"] and expected["rejections"]
    assert teacher_server.answer_order == sorted(teacher_server.answer_order)

    teacher_server.shuffle = True
    teacher_server.answer_order.clear()
    monkeypatch.setenv("SI_FAKE_KEY", "shuffled")
    run_generation(with_concurrency(in_order, 16), tmp_path / "shuffled")
    assert teacher_server.answer_order != sorted(teacher_server.answer_order), "no reply overtook another"
    assert run_record(tmp_path / "shuffled") == expected
    check_run(tmp_path / "shuffled", SEED_TEXTS)
    assert set(teacher_server.calls_for("shuffled")) == set(teacher_server.calls_for("in-order"))


GUESS_GAUGES = {"guessed_requests", "guesses_used", "replicas", "retries"}
"""When rounds overlap, what was asked early and what was sent while a round was open (its replicas'
attempts, retries) depend on arrival order; what the rounds decided and used does not."""


def test_overlapping_rounds_decide_what_one_round_at_a_time_decides(
    teacher_server, seeds_file, tmp_path, monkeypatch
):
    """The next round's opening is asked during this round's tail, on a guess; the run (tasks, ids,
    rejections in file order, what each round used) is the one a round-at-a-time run makes, and the
    guesses did serve real requests."""
    monkeypatch.setenv("SI_FAKE_KEY", "one-at-a-time")
    base = make_config(teacher_server, seeds_file, rounds=4, batch_size=8, overlap_rounds="off")
    run_generation(base, tmp_path / "one-at-a-time")
    expected = run_record(tmp_path / "one-at-a-time")
    assert not any(
        "guessed_requests" in row for row in RunDir(tmp_path / "one-at-a-time").read_state().rounds
    )

    teacher_server.shuffle = True
    monkeypatch.setenv("SI_FAKE_KEY", "overlapped")
    overlapped = with_concurrency(base.model_copy(update={"overlap_rounds": "on"}), 16)
    run_generation(overlapped, tmp_path / "overlapped")
    rows = RunDir(tmp_path / "overlapped").read_state().rounds
    assert sum(row.get("guesses_used", 0) for row in rows) > 0, "no guessed request was used"
    assert all(row.get("guesses_used", 0) <= row.get("guessed_requests", 0) for row in rows)

    def decided(record: dict) -> dict:
        return {
            **record,
            "rounds": [{k: v for k, v in r.items() if k not in GUESS_GAUGES} for r in record["rounds"]],
        }

    assert decided(run_record(tmp_path / "overlapped")) == decided(expected)
    check_run(tmp_path / "overlapped", SEED_TEXTS)
    # Every real request was asked once; the only extra ones are guesses no round used.
    asked, real = teacher_server.calls_for("overlapped"), teacher_server.calls_for("one-at-a-time")
    assert set(real) <= set(asked) and all(n == 1 for n in asked.values())
    wasted = sum(row.get("guessed_requests", 0) - row.get("guesses_used", 0) for row in rows)
    assert len(asked) - len(real) <= wasted


def test_follow_ups_do_not_wait_for_the_slowest_reply(teacher_server, seeds_file, tmp_path, monkeypatch):
    """No stage barrier: while one instruction reply is held back, the classification requests built
    from the other replies are already sent (the held reply is released by their arrival)."""
    monkeypatch.setenv("SI_FAKE_KEY", "straggler")
    teacher_server.hold_first = True
    config = with_concurrency(make_config(teacher_server, seeds_file, rounds=1), 8)
    run_generation(config, tmp_path / "run")
    assert teacher_server.held_until_followup is True
    assert check_run(tmp_path / "run", SEED_TEXTS)["ids"]


def test_a_time_budget_stops_after_a_committed_round_and_a_rerun_continues(
    teacher_server, seeds_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("SI_FAKE_KEY", "budget")
    config = make_config(teacher_server, seeds_file, rounds=None, time_budget="0.001")
    outcome = run_generation(config, tmp_path / "run")
    assert outcome.stopped == "time_budget" and outcome.rounds_run == 1
    first = check_run(tmp_path / "run", SEED_TEXTS)
    assert first["state"].rounds_done == 1 and first["summary"]["kept_total"] == len(first["ids"])
    again = run_generation(config, tmp_path / "run")
    assert again.stopped == "time_budget" and again.rounds_run == 1
    second = check_run(tmp_path / "run", SEED_TEXTS)
    assert second["state"].rounds_done == 2 and second["ids"][: len(first["ids"])] == first["ids"]
    assert all(n == 1 for n in teacher_server.calls_for("budget").values())
    # The budget may change between invocations; with a round count, whichever comes first ends the run.
    roomy = config.model_copy(update={"time_budget": 3600.0, "rounds": 2})
    outcome = run_generation(roomy, tmp_path / "run")
    assert outcome.stopped is None and outcome.rounds_run == 2
    assert check_run(tmp_path / "run", SEED_TEXTS)["state"].rounds_done == 4


LINE = re.compile(
    r"generate: round (\d+) · requests (\d+)/(\d+) · kept (\d+) · [\d,]+ tok/s · elapsed \S+ · eta \S+$"
)
DONE = re.compile(
    r"generate: round (\d+) done · kept (\d+) of (\d+) candidates \((\d+) in all\) · (\d+) requests · "
    r"[\d,]+ tok/s · elapsed \S+ · eta \S+$"
)


def test_progress_lines_for_a_log(teacher_server, seeds_file, tmp_path, monkeypatch):
    """Plain lines (interval 0: one per delivery) with requests done/asked, kept, tok/s, elapsed, ETA."""
    monkeypatch.setenv("SI_FAKE_KEY", "lines")
    out = io.StringIO()
    with LineProgress(out, interval_s=0) as progress:
        run_generation(make_config(teacher_server, seeds_file, rounds=2), tmp_path / "run", progress=progress)
    lines = out.getvalue().splitlines()
    assert lines[0] == "generate: run starts after round 0 (0 kept); 2 rounds"
    state = RunDir(tmp_path / "run").read_state()
    done = [DONE.match(line) for line in lines if DONE.match(line)]
    assert [int(m[1]) for m in done] == [1, 2]
    for m, row in zip(done, state.rounds, strict=True):
        assert (int(m[2]), int(m[3]), int(m[5])) == (row["kept"], row["candidates"], row["requests"])
    assert int(done[-1][4]) == state.kept_total
    middle = [LINE.match(line) for line in lines if LINE.match(line)]
    assert len(middle) + len(done) + 1 == len(lines)
    for round_no, row in zip((1, 2), state.rounds, strict=True):
        counts = [(int(m[2]), int(m[3])) for m in middle if int(m[1]) == round_no]
        assert [d for d, _ in counts] == list(range(1, row["requests"] + 1))  # one line per answer
        assert all(d <= asked <= row["requests"] for d, asked in counts) and counts[-1][1] == row["requests"]


def test_generate_prints_progress_lines_when_stdout_is_not_a_terminal(baseline, teacher_server, tmp_path):
    config, _ = baseline("self-instruct")
    env = {**os.environ, "SI_FAKE_KEY": "not-a-tty"}
    cmd = [sys.executable, "-m", "pipeline.cli", "generate", "--config", str(config)]
    proc = subprocess.run(
        [*cmd, "--run-dir", str(tmp_path / "a"), "--rounds", "2"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert [DONE.match(line)[1] for line in proc.stdout.splitlines() if DONE.match(line)] == ["1", "2"]
    # --json keeps stdout for the summary: the lines go to stderr. A tiny budget: one round, then a note.
    proc = subprocess.run(
        [*cmd, "--run-dir", str(tmp_path / "b"), "--time-budget", "0.001", "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["rounds"]) == 1
    assert [DONE.match(line)[1] for line in proc.stderr.splitlines() if DONE.match(line)] == ["1"]
    assert "time budget (0s) spent after 1 rounds" in proc.stderr


# -- killed runs (a real `selfinstruct generate` process) -------------------------------------------------
def write_cli_config(
    path: Path, server: FakeTeacher, seeds: Path, method: str = "self-instruct", **changes: object
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                **{k: v for k, v in changes.items() if k != "concurrency"},
                "method": method,
                "seeds": str(seeds),
                "batch_size": 4,
                "rounds": 3,
                "decoding": {"constrained": "off"},
                "teacher": {
                    "backend": "openai",
                    "model": "fake-teacher",
                    "base_urls": [server.url],
                    "api_key_env": "SI_FAKE_KEY",
                    "concurrency": changes.get("concurrency", 1),
                    "retry_base_s": 0.0,
                },
            }
        )
    )
    return path


def finish(config: Path, run_dir: Path, key: str, rounds: int = 3) -> None:
    """Rerun the same command until the run has `rounds` committed rounds (as a user would)."""
    state = RunDir(run_dir).read_state()
    done = state.rounds_done if state else 0
    if done < rounds:
        proc = generate_cli(config, run_dir, key, "--rounds", str(rounds - done))
        assert proc.returncode == 0, proc.stderr


@pytest.fixture()
def baseline(teacher_server, seeds_file, tmp_path):
    def make(method: str = "self-instruct") -> tuple[Path, dict]:
        config = write_cli_config(tmp_path / f"{method}.yaml", teacher_server, seeds_file, method)
        proc = generate_cli(config, tmp_path / f"baseline-{method}", f"base-{method}")
        assert proc.returncode == 0, proc.stderr
        return config, check_run(tmp_path / f"baseline-{method}", SEED_TEXTS)

    return make


CRASHES = [
    ("round_start@2", "self-instruct"),
    ("mid_teacher@2", "self-instruct"),
    ("after_teacher@1", "self-instruct"),
    ("after_instances@2", "self-instruct"),
    ("torn_append@2", "self-instruct"),
    ("after_tasks@2", "self-instruct"),
    ("after_append@2", "self-instruct"),
    ("after_state@2", "self-instruct"),
    ("after_append@2", "alpaca"),
    ("mid_teacher@1", "alpaca"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("crash", "method"), CRASHES)
def test_kill_at_a_named_point_then_resume(crash, method, baseline, teacher_server, tmp_path):
    config, expected = baseline(method)
    run_dir = tmp_path / "killed"
    key = f"killed-{crash}-{method}"
    proc = generate_cli(config, run_dir, key, crash=crash)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr
    if crash.startswith("torn_append"):
        assert not (run_dir / "machine_tasks.jsonl").read_bytes().endswith(b"\n")
    if crash.startswith(("after_tasks", "after_append")):
        # The round's records are on disk but it is not committed: the resume must redo it and match them.
        state = RunDir(run_dir).read_state()
        done = state.rounds_done if state else 0
        written = "machine_tasks.jsonl" if crash.startswith("after_tasks") else "rejected.jsonl"
        assert any(r["round"] > done for r in read_jsonl(run_dir / written))
    finish(config, run_dir, key)
    got = check_run(run_dir, SEED_TEXTS)
    assert got["ids"] == expected["ids"]
    assert got["instructions"] == expected["instructions"]
    assert got["keys"] == expected["keys"]
    assert got["state"].kept_total == expected["state"].kept_total
    assert read_jsonl(run_dir / "machine_tasks.jsonl") and (
        run_dir / "machine_tasks.jsonl"
    ).read_bytes().endswith(b"\n")
    # Nothing was asked twice, and exactly what the uninterrupted run asked was asked.
    calls = teacher_server.calls_for(key)
    assert max(calls.values()) == 1, "a resumed run repeated a teacher call"
    assert set(calls) == set(teacher_server.calls_for(f"base-{method}"))


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["round_start@2", "mid_teacher@2", "after_instances@2", "after_state@2"])
def test_overlapping_rounds_killed_then_resumed_make_the_uninterrupted_run(
    crash, baseline, teacher_server, seeds_file, tmp_path
):
    """Killed with the next round's guesses out (overlap on, 4 requests open at once), then resumed: the
    run is the one rounds made one at a time without a kill; only answers in flight at the kill were lost."""
    _, expected = baseline("self-instruct")
    config = write_cli_config(
        tmp_path / "overlap.yaml", teacher_server, seeds_file, overlap_rounds="on", concurrency=4
    )
    run_dir = tmp_path / "killed"
    key = f"overlap-{crash}"
    teacher_server.shuffle = True
    proc = generate_cli(config, run_dir, key, crash=crash)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr
    finish(config, run_dir, key)
    got = check_run(run_dir, SEED_TEXTS)
    assert (got["ids"], got["instructions"], got["keys"]) == (
        expected["ids"],
        expected["instructions"],
        expected["keys"],
    )
    calls = teacher_server.calls_for(key)
    assert sum(n - 1 for n in calls.values()) <= 4
    assert set(teacher_server.calls_for("base-self-instruct")) <= set(calls)
    assert all(row.get("guesses_used", 0) <= row.get("guessed_requests", 0) for row in got["state"].rounds)


@pytest.mark.slow
def test_uncommitted_records_that_a_forced_rerun_does_not_reproduce_are_dropped(baseline, tmp_path):
    config, _ = baseline("self-instruct")
    run_dir = tmp_path / "forced"
    proc = generate_cli(config, run_dir, "forced", crash="after_append@2")
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr
    before = [r["candidate"]["key"] for r in read_jsonl(run_dir / "rejected.jsonl") if r["round"] == 2]
    proc = generate_cli(config, run_dir, "forced", "--rounds", "2", "--seed", "7")
    assert proc.returncode == 2 and "seed: 42 -> 7" in proc.stderr
    proc = generate_cli(config, run_dir, "forced", "--rounds", "2", "--seed", "7", "--force")
    assert proc.returncode == 0, proc.stderr
    got = check_run(run_dir, SEED_TEXTS)  # per-round accounting would catch any stale record
    assert got["state"].rounds_done == 3
    after = [r["candidate"]["key"] for r in read_jsonl(run_dir / "rejected.jsonl") if r["round"] == 2]
    assert after != before


@pytest.mark.slow
def test_sigkill_at_random_moments(baseline, teacher_server, tmp_path):
    config, expected = baseline("self-instruct")
    run_dir = tmp_path / "sigkilled"
    key = "sigkilled"
    kills = 0
    delays = random.Random(5).sample([0.4, 0.7, 1.0, 1.3, 1.6, 1.9, 2.2, 2.5], 6)
    for delay in delays:
        state = RunDir(run_dir).read_state()
        done = state.rounds_done if state else 0
        if done >= 3:
            break
        proc = generate_cli(config, run_dir, key, "--rounds", str(3 - done), popen=True)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
    finish(config, run_dir, key)
    got = check_run(run_dir, SEED_TEXTS)
    assert got["ids"] == expected["ids"] and got["keys"] == expected["keys"]
    calls = teacher_server.calls_for(key)
    # With concurrency 1 a kill can lose at most the one answer in flight.
    assert sum(n - 1 for n in calls.values()) <= kills
    assert set(calls) == set(teacher_server.calls_for("base-self-instruct"))


def test_cli_refuses_a_changed_config_and_reports_clearly(baseline, tmp_path):
    config, _ = baseline("self-instruct")
    run_dir = tmp_path / "baseline-self-instruct"
    proc = generate_cli(config, run_dir, "base-self-instruct", "--batch-size", "5", "--method", "alpaca")
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "batch_size: 4 -> 5" in proc.stderr
    assert "method: 'self-instruct' -> 'alpaca'" in proc.stderr and "Traceback" not in proc.stderr
    proc = generate_cli(config, run_dir, "base-self-instruct", "--rounds", "1", "--until", "3")
    assert proc.returncode == 2 and "either --rounds or --until" in proc.stderr
    proc = generate_cli(config, run_dir, "base-self-instruct", "--rounds", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert len(summary["rounds"]) == 4 and summary["kept_total"] >= 1


@pytest.mark.slow
def test_tokens_paid_in_a_killed_round_are_counted_once(baseline, teacher_server, tmp_path):
    """Killed after round 2's teacher calls (paid, cached, not committed): the resumed run gets them from
    the cache, and summary.json still counts their tokens, once, saying they came from earlier."""
    config, expected = baseline("self-instruct")
    run_dir = tmp_path / "killed"
    key = "killed-paid"
    proc = generate_cli(config, run_dir, key, crash="after_teacher@2")
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr
    finish(config, run_dir, key)
    want = json.loads((tmp_path / "baseline-self-instruct" / "summary.json").read_text())["totals"]
    got = json.loads((run_dir / "summary.json").read_text())["totals"]
    assert (got["prompt_tokens"], got["completion_tokens"]) == (
        want["prompt_tokens"],
        want["completion_tokens"],
    )
    assert got["earlier_completion_tokens"] > 0 and "earlier_completion_tokens" not in want  # 0: left out
    resumed = json.loads((run_dir / "summary.json").read_text())["rounds"][1]
    assert 0 < resumed["earlier_prompt_tokens"] <= resumed["prompt_tokens"]  # what round 2 paid before
    assert max(teacher_server.calls_for(key).values()) == 1  # and nothing was asked twice
