"""The simulated fleet of bench/fleet.py answers in the recipe's layouts (so the bench measures a
pipeline that keeps tasks), and one teacher reuses its connections from round to round."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipeline.core.yamlconfig import load_config
from pipeline.generate.config import GenerateConfig
from pipeline.generate.protocol import run_generation
from pipeline.teachers.openai_compat import OpenAITeacher

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from fake_replica import FakeReplica  # noqa: E402
from fleet_replica import CORPUS, TeacherWriter, load_texts  # noqa: E402

pytestmark = pytest.mark.skipif(not CORPUS.exists(), reason="needs ../shared/bench/instructions_52k.jsonl")


def test_a_run_on_the_simulated_fleet_parses_every_reply_and_keeps_tasks(tmp_path):
    writer = TeacherWriter(load_texts(CORPUS)[:3000])
    replica = FakeReplica(capacity=16, service_s=0.0, writer=writer).start()
    overrides = {
        "rounds": 2,
        "batch_size": 4,
        "time_budget": "none",
        "decoding.constrained": "off",
        "teacher.backend": "openai",
        "teacher.model": "fake-teacher",
        "teacher.base_urls": [replica.base_url],
    }
    config = load_config(REPO / "configs" / "default.yaml", GenerateConfig, overrides)
    teacher = OpenAITeacher(config.teacher)
    pools: list[int] = []  # the connection pool each round was answered through
    try:
        outcome = run_generation(
            config,
            tmp_path / "run",
            teacher=teacher,
            after_commit=lambda state, _: pools.append(id(teacher._clients[replica.base_url])),
        )
    finally:
        teacher.close()
        replica.stop()
    assert outcome.summary is not None and outcome.rounds_run == 2
    rows = outcome.summary.rounds
    assert all(row.kept > 0 for row in rows)
    rejected = [json.loads(line) for line in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    assert not [
        r for r in rejected if r["stage"] == "parse" or any(c.startswith("parse_") for c in r["reasons"])
    ]
    # both rounds went through the same connection pool (made once, on the teacher's loop)
    assert len(pools) == 2 and len(set(pools)) == 1
    answered = sum(replica.stats.answered.values())
    assert answered == outcome.usage["requests"]
