"""A generate round over several (simulated) replicas: summary.json and the live display show each
replica's requests, failures and concurrency limit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.core.yamlconfig import load_config
from pipeline.generate.config import GenerateConfig
from pipeline.generate.progress import ProgressListener
from pipeline.generate.protocol import run_generation
from pipeline.run.summary import RunSummary
from pipeline.teachers.usage import ReplicaCounts, describe_replicas

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from fake_replica import FakeReplica  # noqa: E402  (bench/fake_replica.py: the simulated replica)


class Recorder(ProgressListener):
    def __init__(self) -> None:
        self.seen: list[dict[str, ReplicaCounts]] = []

    def replicas(self, counts: dict[str, ReplicaCounts]) -> None:
        self.seen.append(dict(counts))


def test_summary_and_progress_show_requests_and_concurrency_per_replica(tmp_path):
    first = FakeReplica(capacity=4, service_s=0.01).start()
    second = FakeReplica(capacity=4, service_s=0.01, failure_rate=0.2, seed=3).start()
    urls = [first.base_url, second.base_url]
    overrides = {
        "rounds": 1,
        "batch_size": 6,
        "teacher.backend": "openai",
        "teacher.model": "fake-teacher",
        "teacher.base_urls": urls,
        "teacher.retry_base_s": 0.01,
        "teacher.retry_max_s": 0.05,
        "teacher.max_retries": 10,
        # The simulated replica answers free text only; the accounting below counts the run's requests.
        "decoding.constrained": "off",
    }
    config = load_config(REPO / "configs" / "default.yaml", GenerateConfig, overrides)
    recorder = Recorder()
    try:
        run_generation(config, tmp_path / "run", progress=recorder)
    finally:
        first.stop()
        second.stop()

    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    RunSummary.model_validate(on_disk)  # the typed contract reads it back
    row = on_disk["rounds"][0]
    assert set(row["replicas"]) == set(urls)
    answered = sum(first.stats.answered.values()) + sum(second.stats.answered.values())
    assert sum(r["requests"] for r in row["replicas"].values()) == answered + second.stats.failed
    assert row["replicas"][second.base_url]["failures"] == second.stats.failed
    assert all(r["concurrency"] >= 1 for r in row["replicas"].values())
    assert on_disk["totals"]["replicas"] == row["replicas"]  # one round: the totals are that round
    # The live display was told as answers came in, ending where the summary ends.
    assert recorder.seen and set(recorder.seen[-1]) == set(urls)
    line = describe_replicas(recorder.seen[-1])
    host = first.base_url.split("//")[1].split("/")[0]
    assert f"{host} {recorder.seen[-1][first.base_url].requests} req" in line
