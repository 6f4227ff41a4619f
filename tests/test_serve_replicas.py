"""`selfinstruct serve` past one server: vLLM's parallelism flags, --replicas, --api-key, and two real
replicas serving one `generate` run while one of them is killed."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.teachers.config import EngineOptions
from pipeline.teachers.engine import Machine, engine_kwargs
from pipeline.teachers.replicaset import open_network_warning, public_base_url, replica_log
from pipeline.teachers.server import ServerOptions, free_port, server_command

REPO = Path(__file__).resolve().parents[1]
GPU = Machine(cuda=True, cpu_flags=frozenset())


def test_vllm_parallelism_reaches_the_server_command():
    options = EngineOptions(
        tensor_parallel_size=4,
        pipeline_parallel_size=2,
        data_parallel_size=2,
        distributed_executor_backend="ray",
    )
    kwargs = engine_kwargs(options, "/models/x", GPU)
    assert kwargs["tensor_parallel_size"] == 4 and kwargs["pipeline_parallel_size"] == 2
    assert kwargs["data_parallel_size"] == 2 and kwargs["distributed_executor_backend"] == "ray"
    cmd = server_command(ServerOptions(engine=options), "/models/x", GPU)
    for flag, value in [
        ("--tensor-parallel-size", "4"),
        ("--pipeline-parallel-size", "2"),
        ("--data-parallel-size", "2"),
        ("--distributed-executor-backend", "ray"),
    ]:
        assert cmd[cmd.index(flag) + 1] == value
    # Left at their defaults, vLLM's own defaults stand (no flag at all).
    plain = engine_kwargs(EngineOptions(), "/models/x", GPU)
    assert "pipeline_parallel_size" not in plain and "distributed_executor_backend" not in plain


def test_serving_beyond_loopback_without_a_key_is_called_out():
    assert open_network_warning("127.0.0.1", None) is None
    assert open_network_warning("0.0.0.0", "secret") is None
    assert "anyone who can reach this machine" in open_network_warning("0.0.0.0", None)
    assert "anyone" in open_network_warning("10.1.2.3", "")


def test_serve_warns_first_when_open_without_a_key(tmp_path):
    missing = str(tmp_path / "nothing")
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--model", missing])
    assert result.exit_code == 2 and "not a model folder" in result.output
    assert "anyone who can reach this machine" in result.output
    keyed = CliRunner().invoke(
        main, ["serve", "--host", "0.0.0.0", "--model", missing], env={"VLLM_API_KEY": "s3cret"}
    )
    assert keyed.exit_code == 2 and "anyone" not in keyed.output


def test_urls_to_paste_and_logs_per_replica(tmp_path):
    assert public_base_url("127.0.0.1", 8001) == "http://127.0.0.1:8001/v1"
    assert "0.0.0.0" not in public_base_url("0.0.0.0", 8001)  # clients need this machine's name
    assert public_base_url("::1", 9000) == "http://[::1]:9000/v1"
    assert replica_log(None, tmp_path, 8001, 2) == tmp_path / "serve-8001.log"
    assert replica_log(tmp_path / "s.log", tmp_path, 8001, 1) == tmp_path / "s.log"
    assert replica_log(tmp_path / "s.log", tmp_path, 8001, 2) == tmp_path / "s-8001.log"


# --- two real replicas, one generate run, one replica killed mid-run ----------------------------------


def _two_free_ports() -> int:
    for _ in range(50):
        port = free_port()
        if port < 65535 and _is_free(port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _listener(root_pid: int, port: int):
    """The process (in the serve command's tree) that listens on `port`: a replica's api_server."""
    import psutil

    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    return proc
        except psutil.Error:
            continue
    return None


def _successes(url: str) -> float:
    """Requests a vLLM server has finished, from its Prometheus metrics."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{")
    )


@pytest.mark.engine
@pytest.mark.slow
def test_two_replicas_serve_a_run_and_one_is_killed_midway(tmp_path):
    import psutil

    port = _two_free_ports()
    serve_cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "serve",
        "--replicas",
        "2",
        "--port",
        str(port),
        "--json",
    ]
    serve_cmd += ["--max-model-len", "2048", "--kv-cache-gib", "0.5", "--gpu-memory-utilization", "0.3"]
    serve_cmd += ["--log", str(tmp_path / "serve.log"), "--start-timeout", "900"]
    serve_err = (tmp_path / "serve.err").open("w")
    server = subprocess.Popen(
        serve_cmd, stdout=subprocess.PIPE, stderr=serve_err, text=True, start_new_session=True
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 1200)
        assert ready, "the replicas did not start"
        line = server.stdout.readline()
        assert line, (tmp_path / "serve.err").read_text()[-3000:]
        urls = json.loads(line)["base_urls"]
        assert urls == [f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port + 1}/v1"]
        first, second = _listener(server.pid, port), _listener(server.pid, port + 1)
        assert first is not None and second is not None
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= 2:  # each replica on its own core(s)
            assert set(first.cpu_affinity()).isdisjoint(second.cpu_affinity())

        config = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
        config.update(rounds=1, batch_size=6)
        config["teacher"] = {
            "backend": "openai",
            "model": "bundled",
            "base_urls": urls,
            "max_retries": 10,
            "retry_base_s": 0.2,
            "retry_max_s": 2.0,
            "concurrency": 16,
        }
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
        run_dir = tmp_path / "run"
        gen_cmd = [sys.executable, "-m", "pipeline.cli", "generate", "--config", str(tmp_path / "run.yaml")]
        gen_cmd += ["--run-dir", str(run_dir), "--quiet"]
        gen_log = (tmp_path / "generate.log").open("w")
        run = subprocess.Popen(gen_cmd, stdout=gen_log, stderr=subprocess.STDOUT)

        # Once the second replica has answered something, kill it (and its engine) outright.
        deadline = time.monotonic() + 1200
        while _successes(urls[1]) < 1:
            assert run.poll() is None, (tmp_path / "generate.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the second replica never answered"
            time.sleep(0.5)
        os.killpg(os.getpgid(second.pid), signal.SIGKILL)
        assert run.poll() is None, "the run finished before the kill: nothing was tested"

        assert run.wait(timeout=1800) == 0, (tmp_path / "generate.log").read_text()[-3000:]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        serve_err.close()
    assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
    assert f"replica on port {port + 1} exited" in (tmp_path / "serve.err").read_text()

    from pipeline.run.reader import Run
    from pipeline.run.rundir import TASK_STAGES

    reader = Run.open(run_dir)
    tasks, rejections = reader.read_tasks(), reader.read_rejections()  # typed: every record valid
    summary = reader.summary()
    row = summary.rounds[0]
    assert set(row.replicas) == set(urls)
    assert row.replicas[urls[1]].failures >= 1  # it was killed under load ...
    assert row.replicas[urls[0]].requests > row.replicas[urls[0]].failures
    # ... and nothing was lost or paid twice: every request got exactly one answer.
    answered = sum(r.requests - r.failures for r in row.replicas.values())
    assert answered == row.requests - row.cache_hits
    assert len({t.id for t in tasks}) == len(tasks)
    assert len({t.instruction for t in tasks}) == len(tasks)
    assert row.kept == len(tasks)
    assert row.candidates == len(tasks) + sum(r.stage in TASK_STAGES for r in rejections)
