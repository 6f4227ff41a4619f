"""A start that failed blocks nothing (issue 20, point 3), and a wrong base URL is said at once (point 4).

Only a committed round binds a run directory to its configuration; a failed validation writes nothing.
The teacher is the real `openai` backend against fake servers on 127.0.0.1 (tests/test_rounds.py's).
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.generate.protocol import run_generation
from pipeline.run.rundir import RunDir
from tests.openai_fakes import SEED_TEXTS, FakeServer, error, send_json, write_seeds
from tests.test_bad_inputs import assert_refused, selfinstruct, tree
from tests.test_rounds import make_config, serve


class _Failing(BaseHTTPRequestHandler):
    """A server that is up (it lists its model) but fails every request: an engine that did not come up."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        send_json(self, 200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})

    def do_POST(self) -> None:
        send_json(self, 500, error("the engine failed to start", "server_error"))


@pytest.fixture()
def seeds_file(tmp_path: Path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS)


class Cut(Exception):
    """Ends a run at a crash point, as a kill would (the test's stand-in for the process dying)."""


def instructions(run_dir: Path) -> list[str]:
    path = run_dir / "machine_tasks.jsonl"
    return (
        [json.loads(line)["instruction"] for line in path.read_text().splitlines()] if path.exists() else []
    )


def test_a_run_whose_teacher_never_answered_takes_a_new_config(seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k")
    failing = FakeServer(_Failing).start()
    try:
        broken = make_config(failing, seeds_file, rounds=1)
        broken = broken.model_copy(update={"teacher": broken.teacher.model_copy(update={"max_retries": 0})})
        with pytest.raises(UserError):
            run_generation(broken, tmp_path / "run")
    finally:
        failing.stop()
    assert (tmp_path / "run" / "config.yaml").exists()  # the failed start had got that far
    with serve() as good:
        fixed = make_config(good, seeds_file, rounds=1, seed=7)
        run_generation(fixed, tmp_path / "run")  # no --force: no round was ever committed
        run_generation(fixed, tmp_path / "clean")
    assert RunDir(tmp_path / "run").read_state().rounds_done == 1
    assert "seed: 7" in (tmp_path / "run" / "config.yaml").read_text()
    assert instructions(tmp_path / "run") == instructions(tmp_path / "clean")


def test_a_first_round_cut_short_takes_a_new_config_and_leaves_no_old_record(
    seeds_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("SI_FAKE_KEY", "k")

    def cut(point: str, round_no: int) -> None:
        if point == "after_tasks":
            raise Cut

    with serve() as good:
        with pytest.raises(Cut):
            run_generation(make_config(good, seeds_file, rounds=1), tmp_path / "run", crash_hook=cut)
        old = instructions(tmp_path / "run")
        assert old  # round 1's kept tasks were appended, not committed
        fixed = make_config(good, seeds_file, rounds=1, seed=7)
        run_generation(fixed, tmp_path / "run")
        run_generation(fixed, tmp_path / "clean")
    assert instructions(tmp_path / "run") == instructions(tmp_path / "clean") != old


def test_a_committed_round_still_binds_the_run(seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k")
    with serve() as good:
        run_generation(make_config(good, seeds_file, rounds=1), tmp_path / "run")
        with pytest.raises(UserError, match="seed: 42 -> 7"):
            run_generation(make_config(good, seeds_file, rounds=1, seed=7), tmp_path / "run")


def test_too_few_seeds_writes_nothing(tmp_path, seeds_file):
    one = tmp_path / "one.jsonl"
    one.write_text(seeds_file.read_text().splitlines()[0] + "\n")
    before = tree(tmp_path)
    result = selfinstruct("generate", "--seeds", "one.jsonl", "--run-dir", "r", cwd=tmp_path)
    assert_refused(result, "one.jsonl", "1 seed tasks, but every prompt shows 8")
    assert tree(tmp_path) == before and not (tmp_path / "r").exists()


def test_nothing_at_the_base_url_is_said_at_once_and_writes_nothing(tmp_path):
    server = FakeServer(_Failing)
    url = server.url
    server.server_close()  # the port is free again: nothing listens there
    result = selfinstruct(
        "generate", "--teacher", "openai", "--base-url", url, "--run-dir", "r", cwd=tmp_path
    )
    assert_refused(result, f"nothing answers at the teacher's base URL(s): {url}", "Connection refused")
    assert "cached" not in result.stderr and not (tmp_path / "r").exists()


def test_one_dead_replica_of_two_is_a_warning(seeds_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k")
    dead = FakeServer(_Failing)
    dead_url = dead.url
    dead.server_close()
    warnings: list[str] = []
    with serve() as good:
        config = make_config(good, seeds_file, rounds=1)
        config = config.model_copy(
            update={"teacher": config.teacher.model_copy(update={"base_urls": [good.url, dead_url]})}
        )
        run_generation(config, tmp_path / "run", on_warning=warnings.append)
    assert any(dead_url in w and "does not answer" in w for w in warnings)
