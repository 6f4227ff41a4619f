"""magpie against a fake OpenAI-compatible teacher (raw /v1/completions, our chat template applied):
golden prompts, Magpie's filters, multi-turn order through export, kill-and-resume without a repeated
call, and the clear error for a teacher without a chat template.

The fake reads only the two prompt shapes Magpie sends, both rendered with the bundled model's template:
a conversation ending where a user turn starts (it writes a query) or where the assistant's starts (an
answer). Every query and answer says which turn it is, so the order of turns can be followed to export.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml
from crashing_cli import CRASH_EXIT_CODE, generate_cli
from openai_fakes import SEED_TEXTS, FakeServer, completion, error, read_request, send_json, write_seeds

from pipeline.core.errors import UserError
from pipeline.core.model import resolve_model
from pipeline.generate.config import GenerateConfig, MagpieConfig
from pipeline.generate.protocol import run_generation
from pipeline.generate.recipes.magpie import query_reasons, reply_reasons
from pipeline.quality.config import FilterConfig
from pipeline.run.export import export_run
from pipeline.run.reader import Run

GOLDEN = Path(__file__).resolve().parent / "golden" / "rounds"  # whole rounds; test_prompts owns golden/*.*
UPDATE_GOLDEN = "SELFINSTRUCT_UPDATE_GOLDEN"
USER_OPEN = "<|im_start|>user\n"
ASSISTANT_OPEN = "<|im_start|>assistant\n"
VOCAB = [
    f"{a}{b}"
    for a in ("bra", "clo", "dri", "fen", "gla", "hol", "kri", "mun")
    for b in ("ck", "dge", "st", "mp")
]


def query_reply(turn: int, digest: str) -> tuple[str, str]:
    kind = int(digest[:8], 16) % 6
    if kind == 0:
        return "Как приготовить хороший борщ дома для всей большой семьи?", "stop"
    if kind == 1:
        return "Hi there?", "stop"
    if kind == 2:
        return "tell me about it " * 8, "stop"
    rng = random.Random(digest)
    words = " ".join(rng.choice(VOCAB) for _ in range(6))
    return f"Turn {turn}: could you explain how the {words} fit together for my plan?", "stop"


def answer_reply(turn: int, digest: str) -> tuple[str, str]:
    kind = int(digest[:8], 16) % 6
    if kind == 0:
        return "The answer is simple and short. " * 10, "stop"
    if kind == 1:
        return f"Answer to turn {turn}: begin with the first part and", "length"
    return f"Answer to turn {turn}: start with the main idea ({digest[:6]}), then check each detail.", "stop"


class MagpieFake(FakeServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.received: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: MagpieFake

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body, chat, text, digest = read_request(self)
        with self.server.lock:
            self.server.calls[(self.headers.get("Authorization", ""), digest)] += 1
            self.server.received.append(text)
        turn = text.count(USER_OPEN)
        if not chat and text.endswith(USER_OPEN) and "<|im_end|>" in body.get("stop", []):
            reply, finish = query_reply(turn, digest)
        elif not chat and text.endswith(ASSISTANT_OPEN):
            reply, finish = answer_reply(turn, digest)
        else:
            send_json(self, 400, error(f"not a magpie prompt: {text[-80:]!r}"))
            return
        send_json(self, 200, completion(body, chat, text, reply, finish))


@pytest.fixture()
def fake():
    server = MagpieFake().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def seeds(tmp_path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS)


def settings(url: str, seeds: Path, **changes) -> dict:
    magpie = {"chat_template": "bundled", **changes.pop("magpie", {})}
    return {
        "method": "magpie",
        "seeds": str(seeds),
        "batch_size": 6,
        "rounds": 2,
        "magpie": magpie,
        "decoding": {"constrained": "off"},
        "teacher": {
            "backend": "openai",
            "model": "fake-teacher",
            "base_urls": [url],
            "api_key_env": "SI_FAKE_KEY",
            "concurrency": 1,
            "retry_base_s": 0.0,
        },
        **changes,
    }


def _run(url: str, seeds: Path, run_dir: Path, **changes):
    return run_generation(GenerateConfig(**settings(url, seeds, **changes)), run_dir)


# -- Magpie's filters: each caught and each passed ---------------------------------------------------------
CFG = MagpieConfig()
GOOD_QUERY = "I'm a team lead with four people. How can I improve communication between them?"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("Как улучшить общение в моей команде из четырёх человек?", "magpie_language"),
        ("Team communication tips management leadership cohesion strategies improvement", "magpie_language"),
        ("Help me please?", "magpie_query_too_short"),
        ("what is the best what is the best what is the best what is the best way", "magpie_repetition"),
    ],
)
def test_each_query_filter_catches_its_case(query, code):
    assert code in query_reasons(query, "stop", CFG, FilterConfig())


def test_a_good_query_passes_and_any_language_switches_the_language_filter_off():
    assert query_reasons(GOOD_QUERY, "stop", CFG, FilterConfig()) == []
    russian = "Как улучшить общение в моей команде из четырёх человек?"
    reasons = query_reasons(
        russian, "stop", MagpieConfig(language="any"), FilterConfig(starts_with_non_ascii=False)
    )
    assert reasons == []


def test_answer_filters_catch_loops_and_cut_replies_and_pass_a_good_answer():
    loop = "Talk to each of them. " * 12
    assert "magpie_repetition" in reply_reasons(GOOD_QUERY, loop, "stop", CFG, FilterConfig())
    cut = "Start by meeting each person and"
    assert "truncated" in reply_reasons(GOOD_QUERY, cut, "length", CFG, FilterConfig())
    good = (
        "Hold a short weekly meeting, agree on one channel for questions, and ask each person for feedback."
    )
    assert reply_reasons(GOOD_QUERY, good, "stop", CFG, FilterConfig()) == []


# -- runs against the fake ---------------------------------------------------------------------------------
def test_the_prompts_the_teacher_receives_match_the_golden_file(fake, seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "golden")
    _run(fake.url, seeds, tmp_path / "run", rounds=1, batch_size=4, seed=5, magpie={"turns": 2})
    got = json.dumps(sorted(set(fake.received)), indent=2, ensure_ascii=False) + "\n"
    path = GOLDEN / "magpie.completion.json"
    if os.environ.get(UPDATE_GOLDEN) == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8"), f"{path}: the prompts changed; see tests/golden/README.md"
    assert any(p.count(USER_OPEN) == 2 and p.endswith(USER_OPEN) for p in fake.received)  # a second turn


def test_a_multi_turn_conversation_keeps_its_turns_in_order_through_export(
    fake, seeds, tmp_path, monkeypatch
):
    monkeypatch.setenv("SI_FAKE_KEY", "turns")
    run_dir = tmp_path / "run"
    _run(fake.url, seeds, run_dir, rounds=3, batch_size=10, magpie={"turns": 3})
    tasks = Run.open(run_dir).committed_tasks()
    assert tasks, "the fake's good conversations must be kept"
    codes = {c for r in Run.open(run_dir).read_rejections() for c in r.reasons}
    assert {"magpie_language", "magpie_query_too_short", "magpie_repetition", "truncated"} <= codes
    for task in tasks:
        conv = task.conversation
        assert [m["role"] for m in conv] == ["user", "assistant"] * 3
        for k in range(3):
            assert conv[2 * k]["content"].startswith(f"Turn {k + 1}:")
            assert conv[2 * k + 1]["content"].startswith(f"Answer to turn {k + 1}:")
        assert task.instruction == conv[0]["content"] and task.instances[0].output == conv[1]["content"]
        assert task.instances[0].input == ""
    by_id = {t.id: t.conversation for t in tasks}

    info = export_run(run_dir, "messages", tmp_path / "m.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["messages"] for r in rows] == [t.conversation for t in tasks]
    assert info["examples"] == len(tasks)

    info = export_run(run_dir, "alpaca", tmp_path / "a.json")
    alpaca = json.loads((tmp_path / "a.json").read_text())
    assert [a["instruction"] for a in alpaca] == [t.instruction for t in tasks]
    assert info["later_turns_left_out"] == 2 * len(tasks)

    from datasets import load_from_disk

    export_run(run_dir, "hf", tmp_path / "hf", test_size=0.2)
    data = load_from_disk(str(tmp_path / "hf"))
    rows = [row for split in data.values() for row in split]
    assert len(rows) == len(tasks)
    for row in rows:
        assert row["messages"] == by_id[row["task_id"]]


def test_a_teacher_without_a_loadable_template_gets_the_clear_error_before_any_request(fake, seeds, tmp_path):
    config = tmp_path / "magpie.yaml"
    raw = settings(fake.url, seeds)
    raw["magpie"] = {}  # teacher.model is "fake-teacher": no tokenizer of that name
    config.write_text(yaml.safe_dump(raw))
    proc = generate_cli(config, tmp_path / "run", "none")
    assert proc.returncode == 2
    assert "method magpie needs the teacher's chat template" in proc.stderr
    assert "teacher.model 'fake-teacher'" in proc.stderr and "magpie.chat_template" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not fake.received


def test_a_tokenizer_without_a_chat_template_gets_the_clear_error(fake, seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "base")
    base = tmp_path / "base-tokenizer"
    base.mkdir()
    bundled = Path(resolve_model("bundled"))
    shutil.copy(bundled / "tokenizer.json", base / "tokenizer.json")
    tok_config = json.loads((bundled / "tokenizer_config.json").read_text())
    tok_config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(tok_config))
    with pytest.raises(UserError, match=r"has none \(a base model\?\)"):
        _run(fake.url, seeds, tmp_path / "run", magpie={"chat_template": str(base)})
    assert not fake.received


@pytest.fixture(scope="module")
def killable(tmp_path_factory):
    """One fake teacher, config and uninterrupted run shared by the kill tests (the run to match)."""
    root = tmp_path_factory.mktemp("kill")
    fake = MagpieFake().start()
    seeds = write_seeds(root / "seeds.jsonl", SEED_TEXTS)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(settings(fake.url, seeds, magpie={"turns": 2})))
    base = generate_cli(config, root / "base", "base")
    assert base.returncode == 0, base.stderr
    try:
        yield fake, config, root / "base"
    finally:
        fake.stop()


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["mid_teacher@1", "after_teacher@2", "after_append@2"])
def test_kill_and_resume_repeats_no_call(killable, tmp_path, crash):
    fake, config, base_dir = killable
    key = f"killed-{crash}"
    proc = generate_cli(config, tmp_path / "killed", key, crash=crash)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr
    done = Run(tmp_path / "killed").read_state()
    proc = generate_cli(
        config, tmp_path / "killed", key, "--rounds", str(2 - (done.rounds_done if done else 0))
    )
    assert proc.returncode == 0, proc.stderr
    calls = fake.calls_for(key)
    assert max(calls.values()) == 1, "a resumed run repeated a teacher call"
    assert set(calls) == set(fake.calls_for("base"))
    mine = [t.model_dump(exclude={"created_at"}) for t in Run.open(tmp_path / "killed").committed_tasks()]
    theirs = [t.model_dump(exclude={"created_at"}) for t in Run.open(base_dir).committed_tasks()]
    assert mine == theirs and mine
