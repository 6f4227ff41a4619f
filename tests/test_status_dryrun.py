"""`selfinstruct status RUN` and `generate --dry-run` (issue 20, point 7): both read, neither writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.core.jsonio import iter_jsonl
from pipeline.generate.protocol import run_generation
from pipeline.run.rundir import RunDir
from tests.openai_fakes import SEED_TEXTS, write_seeds
from tests.test_bad_inputs import assert_refused, selfinstruct, tree
from tests.test_report import write_run
from tests.test_rounds import make_config, serve


@pytest.fixture()
def seeds_file(tmp_path: Path) -> Path:
    return write_seeds(tmp_path / "seeds.jsonl", SEED_TEXTS)


def test_status_counts_what_the_files_hold(tmp_path: Path):
    run = write_run(tmp_path / "run", tmp_path / "seeds.jsonl")
    before = tree(tmp_path)
    result = selfinstruct("status", "run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    kept = [obj for _, obj in iter_jsonl(run / "machine_tasks.jsonl")]
    rejected = [obj for _, obj in iter_jsonl(run / "rejected.jsonl")]
    assert figures["rounds_committed"] == 3
    assert figures["kept"] == len(kept) and figures["rejected"] == len(rejected)
    assert figures["in_progress"] is False and figures["pid"] is None
    assert figures["teacher"].startswith("vllm: ") and figures["judged"] == 0
    table = selfinstruct("status", "run", cwd=tmp_path).stdout
    assert "rounds committed" in table and f"{len(kept)} of" in table
    assert tree(tmp_path) == before


def test_status_sees_a_run_in_progress(tmp_path: Path):
    write_run(tmp_path / "run", tmp_path / "seeds.jsonl")
    with RunDir(tmp_path / "run").locked():  # what a running `generate` holds
        figures = json.loads(selfinstruct("status", "run", "--json", cwd=tmp_path).stdout)
    assert figures["in_progress"] is True and figures["pid"] == os.getpid()
    assert json.loads(selfinstruct("status", "run", "--json", cwd=tmp_path).stdout)["in_progress"] is False


def test_status_of_something_that_is_not_a_run(tmp_path: Path):
    assert_refused(selfinstruct("status", "nowhere", cwd=tmp_path), "nowhere: no such run directory")


def test_dry_run_checks_everything_and_writes_nothing(tmp_path: Path, seeds_file: Path):
    before = tree(tmp_path)
    with serve() as good:
        args = ["generate", "--teacher", "openai", "--base-url", good.url, "--seeds", "seeds.jsonl"]
        result = selfinstruct(*args, "--run-dir", "r", "--dry-run", "--json", cwd=tmp_path)
        assert good.calls == {}  # the probe lists models; no completion was asked for
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["ok"] and found["seeds"]["count"] == len(SEED_TEXTS)
    assert found["run_dir"]["what"] == "a new run"
    assert tree(tmp_path) == before and not (tmp_path / "r").exists()


def test_dry_run_with_the_bundled_model_starts_no_engine(tmp_path: Path):
    result = selfinstruct("generate", "--run-dir", "r", "--dry-run", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "the bundled model" in result.stdout and "(not started)" in result.stdout
    assert not (tmp_path / "r").exists()


def test_dry_run_reports_each_problem_a_run_would_meet(tmp_path: Path, seeds_file: Path, monkeypatch):
    monkeypatch.setenv("SI_FAKE_KEY", "k")
    with serve() as good:
        run_generation(make_config(good, seeds_file, rounds=1), tmp_path / "run")
        base = ["generate", "--teacher", "openai", "--base-url", good.url, "--seeds", "seeds.jsonl"]
        before = tree(tmp_path)
        changed = selfinstruct(*base, "--run-dir", "run", "--batch-size", "2", "--dry-run", cwd=tmp_path)
        assert_refused(changed, "holds a run made with a different configuration", "batch_size")
        model = selfinstruct(
            "generate", "--model", "no/such-model", "--run-dir", "x", "--dry-run", cwd=tmp_path
        )
        assert_refused(model, "no/such-model", "not in the local Hugging Face cache")
        assert tree(tmp_path) == before
