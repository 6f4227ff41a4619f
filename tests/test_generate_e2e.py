"""End to end on the real teacher: the bundled SmolLM2 in-process vLLM engine, the `make generate` preset.

One small run (the preset's method, prompt style and decoding; a smaller batch) must keep tasks, and
every kept task must pass every filter and the ROUGE-L rule when checked again from scratch. The run
is then redone from its cache alone (as after a kill before the commit): the very same records,
without a single call to the engine. Finally the CLI exports it and the dataset loads back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.yamlconfig import load_config
from pipeline.generate.config import GenerateConfig
from pipeline.generate.protocol import run_generation
from pipeline.quality.filters import check_instruction, filter_instances
from pipeline.quality.rouge import rouge_l
from pipeline.run.rundir import TASK_STAGES, RunDir
from pipeline.run.seeds import load_seeds

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def test_bundled_teacher_end_to_end(vllm_teacher, tmp_path):
    config = load_config(REPO / "configs" / "default.yaml", GenerateConfig, {"batch_size": 8, "rounds": 1})
    run_dir = tmp_path / "run"
    outcome = run_generation(config, run_dir, teacher=vllm_teacher)
    run = RunDir(run_dir)
    tasks = run.read_tasks()
    rejections = run.read_rejections()
    summary = json.loads(run.summary_path.read_text())
    row = summary["rounds"][0]

    assert tasks, f"no kept task; rejections: {summary['totals']['rejected_by_reason']}"
    assert outcome.usage["requests"] > config.batch_size  # instructions, then classification and instances
    assert row["candidates"] == len(tasks) + sum(r.stage in TASK_STAGES for r in rejections)
    assert row["completion_tokens"] > 0 and row["tokens_per_s"] > 0
    assert summary["teacher"]["backend"] == "vllm" and summary["teacher"]["fingerprint"]

    pool = [s.instruction for s in load_seeds(config.seeds)]
    for task in tasks:
        assert check_instruction(task.instruction, None, config.filters) == [], task.instruction
        kept, dropped = filter_instances(task.instances, config.filters)
        assert kept == task.instances and dropped == []
        best = max(rouge_l(task.instruction, other) for other in pool)
        assert best <= config.dedup.threshold, task.instruction
        assert task.most_similar and max(task.most_similar.values()) == pytest.approx(best)
        assert len(task.prompt_ids) == 8
        pool.append(task.instruction)

    # Redo the round from the cache alone: the same records, and the engine is not called once.
    redo = tmp_path / "redo"
    redo.mkdir()
    shutil.copytree(run.cache_dir, redo / "cache")
    shutil.copy(run.config_path, redo / "config.yaml")
    before = vllm_teacher.usage.copy()
    again = run_generation(config, redo, teacher=vllm_teacher)
    assert vllm_teacher.usage.since(before).calls == 0
    assert again.usage["cache_hits"] == again.usage["requests"] == outcome.usage["requests"]
    assert [(t.id, t.instruction, t.instances) for t in RunDir(redo).read_tasks()] == [
        (t.id, t.instruction, t.instances) for t in tasks
    ]

    result = CliRunner().invoke(main, ["export", str(run_dir), "--format", "hf", "-o", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    from datasets import load_from_disk

    data = load_from_disk(str(tmp_path / "hf"))
    assert len(data["train"]) + len(data["test"]) == sum(len(t.instances) for t in tasks)
