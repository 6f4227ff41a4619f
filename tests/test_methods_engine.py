"""evol-instruct and magpie end to end on the real teacher: the bundled SmolLM2 in-process engine, each
method's preset, one short round (the session's `vllm_teacher`, so no second engine starts).

Whatever a 135M model writes, every candidate must end kept or rejected with named reasons, kept tasks
must carry their lineage (evol-instruct) or their whole conversation (magpie), and a redo of the round
from the run's cache must make the same records without a call to the engine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.core.yamlconfig import load_config
from pipeline.generate.config import GenerateConfig
from pipeline.generate.protocol import run_generation
from pipeline.run.reader import Run
from pipeline.run.rundir import TASK_STAGES, RunDir

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.engine, pytest.mark.slow]


def _round(preset: str, vllm_teacher, tmp_path: Path, **overrides) -> tuple[Path, GenerateConfig]:
    config = load_config(
        REPO / "configs" / preset, GenerateConfig, {"rounds": 1, "batch_size": 4, **overrides}
    )
    run_dir = tmp_path / "run"
    run_generation(config, run_dir, teacher=vllm_teacher)  # wrapped with the run's cache
    return run_dir, config


def _accounted(run_dir: Path) -> None:
    """Every candidate is kept or rejected once at a task stage, with reason codes."""
    run = Run.open(run_dir)
    row = run.summary().rounds[0]
    rejected = [r for r in run.read_rejections() if r.stage in TASK_STAGES]
    assert row.candidates == len(run.committed_tasks()) + len(rejected)
    assert all(r.reasons for r in rejected)


def _redo_from_cache(run_dir: Path, config: GenerateConfig, vllm_teacher, tmp_path: Path) -> None:
    """The same round again from the first run's cache alone: the same records, no engine call."""
    run = RunDir(run_dir)
    redo = tmp_path / "redo"
    redo.mkdir()
    shutil.copytree(run.cache_dir, redo / "cache")
    before = vllm_teacher.usage.copy()
    again = run_generation(config, redo, teacher=vllm_teacher)
    assert vllm_teacher.usage.since(before).calls == 0
    assert again.usage["cache_hits"] == again.usage["requests"] > 0
    assert [t.model_dump(exclude={"created_at"}) for t in RunDir(redo).read_tasks()] == [
        t.model_dump(exclude={"created_at"}) for t in run.read_tasks()
    ]
    assert [r.model_dump() for r in RunDir(redo).read_rejections()] == [
        r.model_dump() for r in run.read_rejections()
    ]


def test_evol_instruct_round_on_the_bundled_teacher(vllm_teacher, tmp_path):
    run_dir, config = _round("evol.yaml", vllm_teacher, tmp_path)
    _accounted(run_dir)
    run = Run.open(run_dir)
    assert run.summary().rounds[0].candidates == 4  # one rewrite per picked parent
    seed_ids = {s.id for s in run.seeds()[1]}
    for task in run.committed_tasks():
        assert task.evolution is not None and task.evolution.depth == 1
        assert task.evolution.parent in seed_ids and task.instances[0].output.strip()
    for rejection in run.read_rejections():
        assert rejection.candidate["evolution"]["parent"] in seed_ids
    _redo_from_cache(run_dir, config, vllm_teacher, tmp_path)


def test_magpie_two_turns_on_the_bundled_teacher(vllm_teacher, tmp_path):
    run_dir, config = _round("magpie.yaml", vllm_teacher, tmp_path, **{"magpie.turns": 2})
    _accounted(run_dir)
    run = Run.open(run_dir)
    assert run.summary().rounds[0].candidates == 4  # one conversation per opening request
    for task in run.committed_tasks():
        assert [m["role"] for m in task.conversation] == ["user", "assistant", "user", "assistant"]
        assert task.instruction == task.conversation[0]["content"]
    _redo_from_cache(run_dir, config, vllm_teacher, tmp_path)
