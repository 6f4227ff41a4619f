"""`selfinstruct serve` errors: clear messages and exit code 2 (the happy path runs in `vllm_server`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.teachers.server import free_port


def test_serve_rejects_a_missing_model_folder(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "nothing"), "--port", "8999"])
    assert result.exit_code == 2
    assert "not a model folder" in result.output


@pytest.mark.slow
def test_serve_reports_a_server_that_dies_while_starting(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"hello": "world"}))
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "pipeline.cli", "serve", "--model", str(broken), "--port", str(free_port())]
    result = subprocess.run(
        [*cmd, "--start-timeout", "300", "--log", str(log)], capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "exited with code" in result.stderr
    assert "model_type" in result.stderr  # vLLM's own reason, from the last lines of its log
    assert Path(log).exists()
