"""`decoding.constrained` in whole runs against real HTTP teachers (the `openai` backend).

The teacher is a small real HTTP server speaking the OpenAI completions/chat API in three manners: one
that honours vLLM's `structured_outputs` field (its replies are built in the requested layout, and it
checks each one against the grammar it was sent, with xgrammar, before answering), one that refuses the
field as OpenAI does (HTTP 400 "Unrecognized request argument supplied: structured_outputs"), and one
that silently ignores it (free replies, some outside the layout). It counts every request per API key,
so a test can prove that a resumed constrained run never asks anything twice.
"""

from __future__ import annotations

import functools
import html
import random
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import openai
import pytest
import yaml
from click.testing import CliRunner
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

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.generate.config import GenerateConfig
from pipeline.generate.formats import AlpacaList, Instances, InstructionList
from pipeline.generate.prompts import CLASSIFY_SUFFIX
from pipeline.generate.protocol import run_generation
from pipeline.run.rundir import RunDir
from pipeline.teachers.base import PROBE_PROMPT, PROBE_REPLY, Request, SamplingParams, Structured
from pipeline.teachers.openai_compat import rejects_structured, request_kwargs

REPO = Path(__file__).resolve().parents[1]
REFUSAL = "Unrecognized request argument supplied: structured_outputs"
# vLLM's own words (vllm/v1/structured_output/backend_outlines.py, raised as a VLLMValidationError and
# answered as HTTP 400 BadRequestError) when its structured-outputs backend is outlines.
GRAMMAR_REFUSAL = "Outlines structured outputs backend does not support grammar specifications"

VERBS = ["Describe", "Explain", "Compare", "Suggest", "Outline", "Rank", "Plan", "Summarize", "Predict"]
NOUNS = ["bridges", "markets", "recipes", "forests", "festivals", "engines", "gardens", "museums", "harbors"]
NOUNS += ["libraries", "vaccines", "satellites", "railways", "deserts", "glaciers", "bakeries", "volcanoes"]
ADJS = ["ancient", "urban", "coastal", "digital", "seasonal", "rural", "arctic", "tropical", "lunar"]


def instruction(rng: random.Random) -> str:
    return (
        f"{rng.choice(VERBS)} {rng.randint(2, 9)} {rng.choice(ADJS)} {rng.choice(NOUNS)} near "
        f"{rng.choice(NOUNS)} for a {rng.choice(ADJS)} town"
    )


@functools.cache
def compiled_grammar(grammar: str):
    import xgrammar as xgr

    return xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False).compile_grammar(grammar)


def grammar_admits(grammar: str, text: str, whole: bool) -> bool:
    """What vLLM's engine would allow: `text` is in the grammar (or a prefix of it, for a cut reply)."""
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(compiled_grammar(grammar), terminate_without_stop_token=True)
    return bool(matcher.accept_string(text)) and (not whole or bool(matcher.is_terminated()))


def layout_reply(text: str, rng: random.Random, chat: bool) -> tuple[str, str]:
    """A reply in the layout the recipe asks for (what an engine held to the grammar writes)."""
    if text.endswith(CLASSIFY_SUFFIX):
        task = text[: -len(CLASSIFY_SUFFIX)].rsplit("Task:", 1)[1]
        yes = "Rank" in task or "Compare" in task
        return ("Yes" if yes else "No") if chat else (" Yes" if yes else " No"), "stop"
    if "List of 20 tasks" in text:
        first = int(text.rsplit("###\n", 1)[1].split(".", 1)[0])
        fmt = AlpacaList(first, 19, ("\n20", "20."), chat)
        items = [
            (
                instruction(rng),
                rng.choice(["<noinput>", f"Some {rng.choice(NOUNS)} facts."]),
                f"About {rng.choice(NOUNS)}.",
            )
            for _ in range(rng.randint(1, 4))
        ]
        reply = fmt.render(items, closed=rng.random() < 0.5)
    elif text.endswith("\n") and "Task:" in text:
        clf = "Class label:" in text
        fmt = Instances(clf, 5, ("Task:", "Example 6"))
        pairs = [
            (
                f"Topic: {rng.choice(ADJS)} {rng.choice(NOUNS)}",
                f"{rng.choice(['Alpha', 'Beta', 'Gamma'])} {k}",
            )
            for k in range(rng.randint(1, 3))
        ]
        reply = fmt.render(pairs)
    else:
        number = int(text.rstrip().rsplit("\n", 1)[1].rstrip("."))
        fmt = InstructionList(number, 15, ("\n\n", "\n16", "16.", "16 ."), chat)
        reply = fmt.render([instruction(rng) for _ in range(rng.randint(1, 5))])
    if rng.random() < 0.15:
        return reply[: rng.randint(len(reply) // 2, len(reply) - 1)], "length"
    return reply, "stop"


def free_reply(text: str, rng: random.Random, chat: bool) -> tuple[str, str]:
    """A reply from a teacher decoding freely: mostly the layout, sometimes not (a preamble, a blank output)."""
    if text == PROBE_PROMPT:
        return "Blue.", "stop"  # what a model asked to name a colour says when nothing holds it
    reply, finish = layout_reply(text, rng, chat)
    if text.endswith(CLASSIFY_SUFFIX) or finish == "length":
        return reply, finish
    if "List of 20 tasks" in text or not (text.endswith("\n") and "Task:" in text):
        return "Sure! Here are some more:" + reply, finish
    return "Output:\n\nI am not sure.", finish


def probe_reply(layout: dict) -> str:
    """What an engine held to the probe's layout writes: its one choice, or the one string its grammar
    admits (checked with xgrammar, as vLLM's engine would hold it)."""
    if "choice" in layout:
        return layout["choice"][0]
    assert grammar_admits(layout["grammar"], PROBE_REPLY, whole=True)
    return PROBE_REPLY


class LayoutTeacher(FakeServer):
    def __init__(self, manner: str):
        super().__init__(_Handler)
        self.manner = manner  # honour | refuse | ignore | outlines (choice and regex yes, grammar no)
        self.structured: Counter[str] = Counter()
        self.bad_replies: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: LayoutTeacher

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body, chat, text, digest = read_request(self)
        auth = self.headers.get("Authorization", "")
        layout = body.get("structured_outputs")
        with self.server.lock:
            self.server.calls[(auth, digest)] += 1
            self.server.structured[auth] += layout is not None
        if layout is not None and self.server.manner == "refuse":
            send_json(self, 400, error(REFUSAL, param=None))
            return
        if layout is not None and self.server.manner == "outlines" and "grammar" in layout:
            send_json(
                self, 400, {"error": {**error(GRAMMAR_REFUSAL, "BadRequestError")["error"], "code": 400}}
            )
            return
        rng = random.Random(f"{body.get('seed')}|{text}")
        outlines_ok = self.server.manner == "outlines" and layout is not None and "grammar" not in layout
        honours = self.server.manner == "honour" or outlines_ok
        if layout is not None and honours and text == PROBE_PROMPT:
            reply, finish = probe_reply(layout), "stop"  # the capability probe, answered as asked
        elif layout is not None and honours:
            reply, finish = layout_reply(text, rng, chat)
            if "choice" in layout:
                admitted = reply in layout["choice"]
            else:
                admitted = grammar_admits(layout["grammar"], reply, whole=finish == "stop")
            if not admitted:
                with self.server.lock:
                    self.server.bad_replies.append(reply)
        else:
            reply, finish = free_reply(text, rng, chat)
        send_json(self, 200, completion(body, chat, text, reply, finish))


@pytest.fixture()
def teacher():
    servers: list[LayoutTeacher] = []

    def start(manner: str) -> LayoutTeacher:
        server = LayoutTeacher(manner).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture()
def seeds_file(tmp_path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS[:10])


def config_for(server: LayoutTeacher, seeds: Path, **changes: object) -> GenerateConfig:
    return GenerateConfig(**run_settings(server.url, concurrency=2, seeds=str(seeds), **changes))


def reasons(run_dir: Path) -> Counter[str]:
    return Counter(code for r in RunDir(run_dir).read_rejections() for code in r.reasons)


@pytest.mark.parametrize(
    ("method", "style"),
    [("self-instruct", "completion"), ("self-instruct", "chat"), ("alpaca", "completion")],
)
def test_a_server_that_honours_the_field_runs_constrained(
    teacher, seeds_file, tmp_path, monkeypatch, method, style
):
    pytest.importorskip("xgrammar")
    server = teacher("honour")
    monkeypatch.setenv("SI_FAKE_KEY", "h")
    warned: list[str] = []
    outcome = run_generation(
        config_for(server, seeds_file, method=method, prompt_style=style),
        tmp_path / "run",
        on_warning=warned.append,
    )
    assert server.bad_replies == []  # every layout reply fits the grammar the run sent
    assert warned == []
    assert outcome.summary.constrained_decoding.applied is True
    assert outcome.summary.constrained_decoding.setting == "auto"
    calls = sum(server.calls_for("h").values())
    assert server.structured["Bearer h"] == calls > 0  # every request carried its layout
    assert outcome.summary.kept_total > 0
    parse_codes = {c for c in reasons(tmp_path / "run") if c.startswith("parse_")}
    assert parse_codes <= {"parse_malformed_item"}  # only alpaca replies cut by the length limit
    for rej in RunDir(tmp_path / "run").read_rejections():
        if "parse_malformed_item" in rej.reasons:
            assert "truncated" in rej.reasons


def test_a_server_that_refuses_the_field_falls_back_once(teacher, seeds_file, tmp_path, monkeypatch):
    server = teacher("refuse")
    monkeypatch.setenv("SI_FAKE_KEY", "r")
    warned: list[str] = []
    config = config_for(server, seeds_file)
    outcome = run_generation(config, tmp_path / "run", on_warning=warned.append)
    assert len(warned) == 1 and "refused" in warned[0] and REFUSAL in warned[0]
    status = outcome.summary.constrained_decoding
    assert status.applied is False and REFUSAL in status.reason
    assert outcome.rounds_run == 2 and outcome.summary.kept_total > 0
    # Only the capability probe carried the field (and was refused); every request of the run was free.
    refused = server.structured["Bearer r"]
    assert refused == 1
    state = RunDir(tmp_path / "run").read_state()
    assert state.constrained.applied is False
    # A rerun remembers the decision: no more refused requests, no more warnings, nothing asked twice.
    warned.clear()
    run_generation(config.model_copy(update={"rounds": 1}), tmp_path / "run", on_warning=warned.append)
    assert warned == [] and server.structured["Bearer r"] == refused
    assert max(server.calls_for("r").values()) == 1
    # The report says which decoding ran, and why.
    result = CliRunner().invoke(main, ["report", str(tmp_path / "run"), "--quiet", "--verbs", "simple"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "free (decoding.constrained: auto; the teacher refused it" in html.unescape(page)


def test_on_fails_clearly_when_the_server_refuses(teacher, seeds_file, tmp_path, monkeypatch):
    server = teacher("refuse")
    monkeypatch.setenv("SI_FAKE_KEY", "o")
    config = config_for(server, seeds_file)
    config = config.model_copy(update={"decoding": config.decoding.model_copy(update={"constrained": "on"})})
    with pytest.raises(UserError, match="decoding.constrained is 'on' but the teacher refused it"):
        run_generation(config, tmp_path / "run")


def test_a_server_that_ignores_the_field_is_caught(teacher, seeds_file, tmp_path, monkeypatch):
    server = teacher("ignore")
    monkeypatch.setenv("SI_FAKE_KEY", "i")
    warned: list[str] = []
    outcome = run_generation(config_for(server, seeds_file), tmp_path / "run", on_warning=warned.append)
    assert len(warned) == 1 and "ignored" in warned[0]
    assert outcome.summary.constrained_decoding.applied is False
    assert server.structured["Bearer i"] == 1  # the probe; then free requests
    assert reasons(tmp_path / "run")["parse_preamble"] == 0  # completion style: the preamble is an item
    off = config_for(server, seeds_file)
    off = off.model_copy(update={"decoding": off.decoding.model_copy(update={"constrained": "off"})})
    with pytest.raises(UserError, match=r"decoding.constrained: 'auto' -> 'off'"):
        run_generation(off, tmp_path / "run")


def test_off_never_constrains(teacher, seeds_file, tmp_path, monkeypatch):
    server = teacher("honour")
    monkeypatch.setenv("SI_FAKE_KEY", "f")
    config = config_for(server, seeds_file, rounds=1)
    config = config.model_copy(update={"decoding": config.decoding.model_copy(update={"constrained": "off"})})
    outcome = run_generation(config, tmp_path / "run")
    assert server.structured["Bearer f"] == 0 and sum(server.calls_for("f").values()) > 0
    assert outcome.summary.constrained_decoding.model_dump() == {
        "setting": "off",
        "applied": False,
        "reason": "decoding.constrained is off",
    }


# -- a constrained run killed and resumed (a real `selfinstruct generate` process) -----------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("crash", "method"),
    [("mid_teacher@2", "self-instruct"), ("after_append@2", "self-instruct"), ("mid_teacher@1", "alpaca")],
)
def test_kill_and_resume_a_constrained_run(teacher, seeds_file, tmp_path, crash, method):
    pytest.importorskip("xgrammar")
    server = teacher("honour")
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "method": method,
                "seeds": str(seeds_file),
                "batch_size": 4,
                "rounds": 3,
                "teacher": {
                    "backend": "openai",
                    "model": "fake-teacher",
                    "base_urls": [server.url],
                    "api_key_env": "SI_FAKE_KEY",
                    "concurrency": 1,
                    "retry_base_s": 0.0,
                },
            }
        )
    )
    base = generate_cli(config, tmp_path / "baseline", "base", "--constrained", "on")
    assert base.returncode == 0, base.stderr
    killed = generate_cli(config, tmp_path / "killed", "killed", "--constrained", "on", crash=crash)
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    done = RunDir(tmp_path / "killed").read_state()
    left = 3 - (done.rounds_done if done else 0)
    resumed = generate_cli(
        config, tmp_path / "killed", "killed", "--constrained", "on", "--rounds", str(left)
    )
    assert resumed.returncode == 0, resumed.stderr
    expected, got = RunDir(tmp_path / "baseline"), RunDir(tmp_path / "killed")
    assert [t.instruction for t in got.read_tasks()] == [t.instruction for t in expected.read_tasks()]
    assert got.read_state().constrained == expected.read_state().constrained
    assert got.read_state().constrained.model_dump() == {
        "setting": "on",
        "applied": True,
        "reason": "the server honoured a structured-outputs test request",
        "base_urls": [server.url],
    }
    calls = server.calls_for("killed")
    assert max(calls.values()) == 1, "a resumed constrained run repeated a teacher call"
    assert set(calls) == set(server.calls_for("base"))
    assert server.structured["Bearer killed"] == sum(calls.values())
    assert (
        yaml.safe_load((tmp_path / "killed" / "config.yaml").read_text())["decoding"]["constrained"] == "on"
    )
    assert server.bad_replies == []


# -- the request body and the refusal, on their own ------------------------------------------------------
def test_the_layout_goes_in_the_structured_outputs_field():
    params = SamplingParams(seed=1, structured=Structured(grammar='root ::= "a"\n'))
    completion = request_kwargs(Request(prompt="x", params=params), "m", 8)
    assert completion["extra_body"] == {"structured_outputs": {"grammar": 'root ::= "a"\n'}}
    chat = request_kwargs(Request(messages=[{"role": "user", "content": "x"}], params=params), "m", 8)
    assert chat["extra_body"]["structured_outputs"] == {"grammar": 'root ::= "a"\n'}
    assert "extra_body" not in request_kwargs(Request(prompt="x", params=SamplingParams()), "m", 8)


def _status_error(status: int, body: dict) -> openai.APIStatusError:
    import httpx

    response = httpx.Response(status, json=body, request=httpx.Request("POST", "http://x/v1/completions"))
    return openai.APIStatusError(body["error"]["message"], response=response, body=body)


def test_only_a_refusal_of_the_field_counts_as_unsupported():
    assert rejects_structured(_status_error(400, {"error": {"message": REFUSAL}}))
    pydantic_style = {
        "error": {"message": "1 validation error: structured_outputs: Extra inputs are not permitted"}
    }
    assert rejects_structured(_status_error(400, pydantic_style))
    # vLLM knows the field but cannot use this grammar: an error to fix, not a reason to decode freely.
    assert not rejects_structured(
        _status_error(400, {"error": {"message": "Invalid grammar specification."}})
    )
    assert not rejects_structured(_status_error(500, {"error": {"message": REFUSAL}}))
    # vLLM on the outlines or lm-format-enforcer backend: the field is known, grammars are not.
    vllm_body = {"error": {"message": GRAMMAR_REFUSAL, "type": "BadRequestError", "param": None, "code": 400}}
    assert rejects_structured(_status_error(400, vllm_body))
    lmfe = "LM Format Enforcer structured outputs backend does not support grammar specifications"
    assert rejects_structured(_status_error(400, {"error": {"message": lmfe}}))


def test_a_vllm_server_without_grammars_falls_back_once(teacher, seeds_file, tmp_path, monkeypatch):
    """vLLM on outlines takes `choice` but answers every grammar with HTTP 400: the probe (a grammar,
    like the run's requests) catches it, and `auto` decodes freely with one warning."""
    server = teacher("outlines")
    monkeypatch.setenv("SI_FAKE_KEY", "g")
    warned: list[str] = []
    outcome = run_generation(config_for(server, seeds_file), tmp_path / "run", on_warning=warned.append)
    assert len(warned) == 1 and GRAMMAR_REFUSAL in warned[0]
    status = outcome.summary.constrained_decoding
    assert status.applied is False and GRAMMAR_REFUSAL in status.reason
    assert outcome.rounds_run == 2 and outcome.summary.kept_total > 0
    assert server.structured["Bearer g"] == 1  # only the probe carried a layout


def test_a_resume_on_other_servers_decides_again(teacher, seeds_file, tmp_path, monkeypatch):
    """Constrained on a server that honours the field; resumed on one that ignores it: decided anew,
    and the summary no longer claims constrained decoding."""
    honour, ignore = teacher("honour"), teacher("ignore")
    monkeypatch.setenv("SI_FAKE_KEY", "u")
    first = run_generation(config_for(honour, seeds_file, rounds=1), tmp_path / "run")
    assert first.summary.constrained_decoding.applied is True
    assert first.summary.constrained_decoding.base_urls == [honour.url]
    warned: list[str] = []
    moved = config_for(ignore, seeds_file, rounds=1)
    second = run_generation(moved, tmp_path / "run", on_warning=warned.append)
    status = second.summary.constrained_decoding
    assert status.applied is False and "ignored" in status.reason and status.base_urls == [ignore.url]
    assert len(warned) == 1 and ignore.structured["Bearer u"] == 1  # the probe, then free requests
    assert RunDir(tmp_path / "run").read_state().constrained == status
    # The same servers again: the decision stands, nothing is probed.
    run_generation(moved, tmp_path / "run")
    assert ignore.structured["Bearer u"] == 1
