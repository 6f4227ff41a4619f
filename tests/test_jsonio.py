"""Crash-safe files: a torn last line (a kill mid-write) is repaired, never trusted, never duplicated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.core.errors import InputFileError
from pipeline.core.jsonio import append_jsonl, iter_jsonl, repair_tail, write_json_atomic


def read_jsonl(path, *, skip_torn_tail=False):
    return [obj for _, obj in iter_jsonl(path, skip_torn_tail=skip_torn_tail)]


def test_append_then_read_back(tmp_path):
    path = tmp_path / "a.jsonl"
    assert append_jsonl(path, [{"k": 1}, {"k": 2}]) == 2
    assert append_jsonl(path, []) == 0
    append_jsonl(path, [{"k": "é"}])
    assert read_jsonl(path) == [{"k": 1}, {"k": 2}, {"k": "é"}]


def test_torn_tail_is_skipped_by_readers_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "a.jsonl"
    append_jsonl(path, [{"k": 1}])
    with path.open("a") as handle:
        handle.write('{"k": 2, "half')
    assert read_jsonl(path, skip_torn_tail=True) == [{"k": 1}]
    with pytest.raises(InputFileError, match="line 2: bad JSON"):
        read_jsonl(path)
    append_jsonl(path, [{"k": 3}])
    assert read_jsonl(path) == [{"k": 1}, {"k": 3}]


def test_repair_tail_without_any_newline(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"torn": ')
    assert repair_tail(path) == len('{"torn": ')
    assert path.read_text() == ""


def test_atomic_write_survives_a_kill_mid_write(tmp_path):
    """A process killed while replacing a file leaves the old content, never a mix."""
    path = tmp_path / "state.json"
    write_json_atomic(path, {"round": 1})
    code = (
        "import os, sys\n"
        "from pipeline.core.jsonio import write_text_atomic\n"
        "import pipeline.core.jsonio as j\n"
        "real = os.replace\n"
        "def die(*a, **k): os._exit(9)\n"
        "j.os.replace = die\n"
        f"write_text_atomic({str(path)!r}, '{{\"round\": 2}}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd())
    assert proc.returncode == 9
    assert json.loads(path.read_text()) == {"round": 1}
    write_json_atomic(path, {"round": 2})
    assert json.loads(path.read_text()) == {"round": 2}
    assert [p.name for p in tmp_path.iterdir() if p.name != "state.json"] == [
        p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"
    ]


def test_atomic_write_sets_the_plain_open_mode_without_touching_the_umask(tmp_path, monkeypatch):
    def no_umask(mask: int) -> int:
        raise AssertionError("os.umask is process-wide; an atomic write must not flip it")

    plain = tmp_path / "plain.json"
    plain.write_text("{}\n")
    monkeypatch.setattr(os, "umask", no_umask)
    write_json_atomic(tmp_path / "atomic.json", {"a": 1})
    assert (tmp_path / "atomic.json").stat().st_mode == plain.stat().st_mode
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
