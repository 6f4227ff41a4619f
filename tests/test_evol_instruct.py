"""evol-instruct against a fake OpenAI-compatible teacher: prompts (golden), elimination rules, lineage,
the report's per-operation shares, `--from RUN`, and kill-and-resume without a repeated call.

The fake reads our evolution and answer prompts (anything else is HTTP 400) and answers from a digest
of the request: good rewrites, and rewrites that each elimination rule must catch (a copy of the
prompt's labels, a two-word reply, the parent again); good answers, refusals, punctuation, cut replies.
"""

from __future__ import annotations

import json
import os
import random
import re
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml
from crashing_cli import CRASH_EXIT_CODE, generate_cli
from openai_fakes import SEED_TEXTS, FakeServer, completion, error, read_request, send_json, write_seeds

from pipeline.core.errors import UserError
from pipeline.generate.config import EvolConfig, GenerateConfig
from pipeline.generate.prompts import ANSWER_SUFFIX, load_templates
from pipeline.generate.protocol import run_generation
from pipeline.generate.recipes.evol_instruct import answer_reasons, clean_rewrite, evolution_reasons
from pipeline.quality.config import FilterConfig
from pipeline.report.figures import compute_report, load_run
from pipeline.report.html import render_html
from pipeline.run.reader import Run

GOLDEN = Path(__file__).resolve().parent / "golden" / "rounds"  # whole rounds; test_prompts owns golden/*.*
UPDATE_GOLDEN = "SELFINSTRUCT_UPDATE_GOLDEN"
VOCAB = [
    f"{a}{b}"
    for a in ("bra", "clo", "dri", "fen", "gla", "hol", "kri", "mun")
    for b in ("ck", "dge", "st", "mp", "rn", "lt")
]
WORDS = ["harbour", "lantern", "orchard", "glacier", "ledger", "compass", "meadow", "furnace", "archive"]
_EVOLVE = re.compile(
    r"(?s)\n\n(Original task|Starting task):\n(?P<parent>.+?)\n\n(Rewritten task|New task):$"
)


def _pick(digest: str, n: int) -> int:
    return int(digest[:8], 16) % n


def evolve_reply(parent: str, digest: str) -> str:
    kind = _pick(digest, 6)
    word = WORDS[int(digest[8:10], 16) % len(WORDS)]
    if kind == 0:
        return f"Rewritten task: {parent} Mention the {word}."  # copies the prompt's label
    if kind == 1:
        return "Do it."  # too short, nothing new
    if kind == 2:
        return parent  # the parent again
    first = " ".join(parent.split("\n")[0].rstrip(".").split()[:8])
    rng = random.Random(digest)
    return f"{first}, and {' '.join(rng.choice(VOCAB) for _ in range(10))}."


def answer_reply(task: str, digest: str) -> tuple[str, str]:
    kind = _pick(digest, 6)
    if kind == 0:
        return "I'm sorry, but I cannot help with that request.", "stop"
    if kind == 1:
        return "... , the ; of - and !", "stop"
    if kind == 2:
        return "Step one: begin with the first part of the task and keep going with", "length"
    return (
        f"Here is a careful answer ({digest[:6]}): first consider the main point, then the details.",
        "stop",
    )


class EvolFake(FakeServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.received: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: EvolFake

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body, chat, text, digest = read_request(self)
        with self.server.lock:
            self.server.calls[(self.headers.get("Authorization", ""), digest)] += 1
            self.server.received.append(text)
        found = _EVOLVE.search(text)
        if found:
            reply, finish = evolve_reply(found["parent"], digest), "stop"
        elif chat or text.endswith(ANSWER_SUFFIX):
            task = text if chat else text[: -len(ANSWER_SUFFIX)].rsplit("### Task:\n", 1)[-1]
            reply, finish = answer_reply(task, digest)
        else:
            send_json(self, 400, error(f"not an evol-instruct prompt: {text[-80:]!r}"))
            return
        send_json(self, 200, completion(body, chat, text, reply, finish))


@pytest.fixture()
def fake():
    server = EvolFake().start()
    try:
        yield server
    finally:
        server.stop()


def settings(url: str, seeds: Path, key_env: str = "SI_FAKE_KEY", **changes) -> dict:
    return {
        "method": "evol-instruct",
        "prompt_style": "chat",
        "seeds": str(seeds),
        "batch_size": 6,
        "rounds": 2,
        "decoding": {"constrained": "off"},
        "teacher": {
            "backend": "openai",
            "model": "fake-teacher",
            "base_urls": [url],
            "api_key_env": key_env,
            "concurrency": 1,
            "retry_base_s": 0.0,
        },
        **changes,
    }


@pytest.fixture()
def seeds(tmp_path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS)


# -- the elimination rules, each caught and each passed -------------------------------------------------
PARENT = "Give three tips for staying focused while studying at home."
GOOD = (
    "Give three tips for staying focused while studying at home, each for a student who shares a loud flat."
)
CFG = EvolConfig()


@pytest.mark.parametrize(
    ("evolved", "code"),
    [
        ("#Rewritten Prompt#: " + GOOD, "evol_copies_prompt"),
        ("Rewritten task: " + GOOD, "evol_copies_prompt"),
        ("Tips please.", "evol_too_short"),
        (PARENT, "evol_no_new_information"),
        ("Give three tips, for staying focused while studying at home now.", "evol_no_new_information"),
        (PARENT.replace("three", "four"), "evol_near_parent"),
    ],
)
def test_each_evolution_rule_catches_its_case(evolved, code):
    assert code in evolution_reasons(PARENT, evolved, CFG)


def test_a_rewrite_repeating_the_prompts_instructions_is_a_copy():
    header = load_templates()["evolve_breadth"]
    echoed = "Plan a quiet study corner on a budget. Reply with the new task alone: no heading, no label."
    assert "evol_copies_prompt" in evolution_reasons(PARENT, echoed, CFG, header)
    # Words the parent itself brought are no copy of the prompt, even if the prompt has them too.
    parent = "Write a short task that people give to an AI assistant about gardening."
    rewrite = "Write a short task that people give to an AI assistant about pruning roses in winter frost."
    assert "evol_copies_prompt" not in evolution_reasons(parent, rewrite, CFG, header)


def test_a_real_evolution_passes_every_rule():
    assert evolution_reasons(PARENT, GOOD, CFG, load_templates()["evolve_constraints"]) == []
    # In-breadth: a new task of the same field shares few words and passes too.
    assert (
        evolution_reasons(PARENT, "Plan a quiet study corner in a shared dormitory room on a budget.", CFG)
        == []
    )


@pytest.mark.parametrize(
    ("answer", "finish", "code"),
    [
        ("Sorry, I can't do that.", "stop", "evol_answer_refused"),
        ("I cannot write that for you.", "stop", "evol_answer_refused"),
        ("... !!! -- the, of, and; to.", "stop", "evol_answer_empty"),
        ("", "stop", "evol_answer_empty"),
        ("First, find a quiet corner and keep going until", "length", "truncated"),
    ],
)
def test_each_answer_rule_catches_its_case(answer, finish, code):
    assert code in answer_reasons(answer, finish, CFG, FilterConfig())


def test_a_real_answer_passes_every_rule():
    fine = "Find a quiet corner, put the phone in another room, and study in 25-minute blocks with breaks."
    assert answer_reasons(fine, "stop", CFG, FilterConfig()) == []
    # "sorry" in a long answer is no refusal (the paper: under 80 words).
    long = "I am sorry to hear it is hard. " + " ".join(["Break the work into parts and rest."] * 12)
    assert "evol_answer_refused" not in answer_reasons(long, "stop", CFG, FilterConfig())
    # A cut answer passes when the truncation filter is switched off.
    cut = "First, find a quiet corner and keep going until"
    assert answer_reasons(cut, "length", CFG, FilterConfig(truncated=False)) == []


def test_clean_rewrite_drops_wrapping_quotes_only():
    assert clean_rewrite('  "Plan a trip."  ') == "Plan a trip."
    assert clean_rewrite('Say "hi" to her') == 'Say "hi" to her'


# -- a run against the fake teacher ---------------------------------------------------------------------
def _run(url: str, seeds: Path, run_dir: Path, **changes):
    return run_generation(GenerateConfig(**settings(url, seeds, **changes)), run_dir)


def test_a_run_keeps_lineage_names_every_reason_and_reports_shares(fake, seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "evol")
    run_dir = tmp_path / "run"
    _run(fake.url, seeds, run_dir, rounds=4, batch_size=12)
    run = Run.open(run_dir)
    tasks = run.committed_tasks()
    rejections = run.read_rejections()
    assert tasks, "the fake's good rewrites must be kept"
    seed_ids = {f"seed_{k}" for k in range(len(SEED_TEXTS))}
    ids = {t.id for t in tasks}
    for task in tasks:
        assert task.method == "evol-instruct" and task.evolution is not None
        assert task.evolution.operation in CFG.operations
        assert task.evolution.parent in seed_ids | ids
        parent_depth = (
            0
            if task.evolution.parent in seed_ids
            else next(t.evolution.depth for t in tasks if t.id == task.evolution.parent)
        )
        assert task.evolution.depth == parent_depth + 1
        assert task.prompt_ids == [task.evolution.parent]
        assert task.instances[0].input == "" and task.instances[0].output.startswith(
            "Here is a careful answer"
        )
    codes = {code for r in rejections for code in r.reasons}
    for code in (
        "evol_copies_prompt",
        "evol_too_short",
        "evol_no_new_information",
        "evol_near_parent",
        "evol_answer_refused",
        "evol_answer_empty",
        "truncated",
    ):
        assert code in codes, code
    assert all("evolution" in r.candidate for r in rejections)
    # The report: kept share per operation and per depth, consistent with the records.
    figures = compute_report(load_run(run_dir), [], seeds)
    evo = figures["evolution"]
    assert sum(r["kept"] for r in evo["by_operation"]) == len(tasks)
    assert sum(r["tried"] for r in evo["by_depth"]) == sum(row.candidates for row in run.summary().rounds)
    assert {r["depth"] for r in evo["by_depth"]} >= {1}
    assert all(0.0 <= r["share"] <= 1.0 for r in evo["by_operation"])
    page = render_html(figures, {}, "")
    assert 'id="evolution"' in page and "kept share" in page
    assert 'id="evolution"' not in render_html({**figures, "evolution": None}, {}, "")


@pytest.mark.parametrize("style", ["chat", "completion"])
def test_the_prompts_the_teacher_receives_match_the_golden_file(fake, seeds, tmp_path, monkeypatch, style):
    monkeypatch.setenv("SI_FAKE_KEY", f"golden-{style}")
    _run(fake.url, seeds, tmp_path / "run", rounds=1, batch_size=6, prompt_style=style, seed=3)
    got = json.dumps(sorted(set(fake.received)), indent=2, ensure_ascii=False) + "\n"
    path = GOLDEN / f"evol_instruct.{style}.json"
    if os.environ.get(UPDATE_GOLDEN) == "1":
        path.write_text(got, encoding="utf-8")
    assert got == path.read_text(encoding="utf-8"), f"{path}: the prompts changed; see tests/golden/README.md"
    operations = {re.search(r"How to rewrite it: (\w+)", t) for t in fake.received}
    assert len(operations) > 1  # more than one operation's prompt was sent


def test_from_run_evolves_another_runs_kept_tasks(fake, seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "from")
    first = tmp_path / "first"
    _run(fake.url, seeds, first, rounds=1, batch_size=8)
    source = {t.id: t for t in Run.open(first).committed_tasks()}
    assert source
    second = tmp_path / "second"
    _run(fake.url, seeds, second, rounds=1, batch_size=8, evol={"from_run": str(first)})
    tasks = Run.open(second).committed_tasks()
    rejections = Run.open(second).read_rejections()
    parents = {t.evolution.parent for t in tasks} | {r.candidate["evolution"]["parent"] for r in rejections}
    assert parents <= set(source)
    for task in tasks:
        assert task.evolution.depth == source[task.evolution.parent].evolution.depth + 1


def test_from_a_missing_run_is_a_clear_error_before_any_request(fake, seeds, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "missing")
    with pytest.raises(UserError, match=r"evol.from_run \(--from\): .*no such run directory"):
        _run(fake.url, seeds, tmp_path / "run", evol={"from_run": str(tmp_path / "nowhere")})
    assert not fake.received


def test_cli_from_and_method_flags(fake, seeds, tmp_path):
    config = tmp_path / "evol.yaml"
    config.write_text(yaml.safe_dump(settings(fake.url, seeds)))
    proc = generate_cli(config, tmp_path / "first", "cli", "--rounds", "1")
    assert proc.returncode == 0, proc.stderr
    proc = generate_cli(
        config, tmp_path / "second", "cli", "--rounds", "1", "--from", str(tmp_path / "first")
    )
    assert proc.returncode == 0, proc.stderr
    stored = yaml.safe_load((tmp_path / "second" / "config.yaml").read_text())
    assert stored["evol"]["from_run"] == str(tmp_path / "first")


@pytest.fixture(scope="module")
def killable(tmp_path_factory):
    """One fake teacher, config and uninterrupted run shared by the kill tests (the run to match)."""
    root = tmp_path_factory.mktemp("kill")
    fake = EvolFake().start()
    seeds = write_seeds(root / "seeds.jsonl", SEED_TEXTS)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(settings(fake.url, seeds)))
    base = generate_cli(config, root / "base", "base")
    assert base.returncode == 0, base.stderr
    try:
        yield fake, config, root / "base"
    finally:
        fake.stop()


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["mid_teacher@2", "after_append@1", "after_tasks@2", "torn_append@2"])
def test_kill_and_resume_repeats_no_call(killable, tmp_path, crash):
    fake, config, base_dir = killable
    key = f"killed-{crash}"
    proc = generate_cli(config, tmp_path / "killed", key, crash=crash)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr
    done = Run(tmp_path / "killed").read_state()
    left = 2 - (done.rounds_done if done else 0)
    proc = generate_cli(config, tmp_path / "killed", key, "--rounds", str(left))
    assert proc.returncode == 0, proc.stderr
    calls = fake.calls_for(key)
    assert max(calls.values()) == 1, "a resumed run repeated a teacher call"
    assert set(calls) == set(fake.calls_for("base"))
    mine = [t.model_dump(exclude={"created_at"}) for t in Run.open(tmp_path / "killed").committed_tasks()]
    theirs = [t.model_dump(exclude={"created_at"}) for t in Run.open(base_dir).committed_tasks()]
    assert mine == theirs


@pytest.mark.parametrize("method", ["evol-instruct", "magpie"])
def test_free_text_methods_decode_freely_and_refuse_constrained_on(method):
    assert GenerateConfig(method=method).decoding.constrained == "off"  # auto: nothing to hold, no probe
    with pytest.raises(ValueError, match="no reply layout"):
        GenerateConfig(method=method, decoding={"constrained": "on"})
