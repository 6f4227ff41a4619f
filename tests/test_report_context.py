"""The report for a newcomer (issue 20, point 6): the funnel's column says what it holds, the chart draws
candidates only, a toy teacher is said at the top, and the run's time and its student are shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.report.build import write_report
from pipeline.report.context import student_figures, toy_teacher_caution
from pipeline.report.figures import compute_report, load_run
from pipeline.report.plots import funnel_bars
from pipeline.run.reader import Run
from pipeline.run.rundir import RunDir
from tests.test_report import check_report_page, write_run


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "runs" / "fixture", tmp_path / "seeds.jsonl")


def test_funnel_column_and_chart(run_dir: Path):
    _, paths = write_report(run_dir)
    html = paths["report"].read_text()
    assert "left, share of candidates" in html
    assert ">of candidates<" not in html
    run = load_run(run_dir)
    seeds_path, seeds = run.source.seeds(None)
    figures = compute_report(run, seeds, seeds_path)
    drawn, requests = funnel_bars(figures["funnel"])
    assert requests == figures["funnel"]["steps"][0]["count"] and requests > 0
    assert not any(step["step"].startswith("teacher requests") for step in drawn)


def test_a_toy_teacher_is_said_at_the_top(run_dir: Path):
    _, paths = write_report(run_dir)
    html = paths["report"].read_text()
    assert html.index('id="teacher-caution"') < html.index("<main>")
    assert "configs/gpu.yaml" in html
    assert "**Caution:**" in paths["card"].read_text().split("## Use")[0]
    assert toy_teacher_caution("Qwen/Qwen2.5-72B-Instruct") is None
    assert toy_teacher_caution("bundled") is not None


def test_wall_clock_and_engine_start_are_shown(run_dir: Path):
    run = RunDir(run_dir)
    state = run.read_state()
    state.rounds[0]["startup_s"] = 41.5  # as the generator records its first round
    run.write_state(state)
    summary = json.loads(run.summary_path.read_text())
    summary["rounds"][0]["startup_s"] = 41.5
    run.summary_path.write_text(json.dumps(summary))
    figures, paths = write_report(run_dir)
    timing = figures["rounds"]["timing"]
    walls = sum(r.wall_s for r in Run(run_dir).summary().rounds)
    assert timing == {"wall_s": round(walls + 41.5, 3), "startup_s": 41.5, "invocations": 1}
    assert "of which 42 s went to starting the engine" in paths["report"].read_text()


def test_the_student_of_make_train_is_shown(run_dir: Path):
    _, paths = write_report(run_dir)
    assert "No student trained on this run yet" in paths["report"].read_text()
    student = run_dir / "student"
    (student / "eval").mkdir(parents=True)
    (student / "train_summary.json").write_text(
        json.dumps(
            {
                "base_model": "bundled",
                "steps": 60,
                "wall_time_s": 301.2,
                "eval_loss_before": 1.4,
                "eval_loss_after": 0.86,
            }
        )
    )
    models = {"base": {"rouge_l": 0.11, "clean_end": 0.5}, "student": {"rouge_l": 0.14, "clean_end": 0.7}}
    (student / "eval" / "eval.json").write_text(json.dumps({"n_tasks": 40, "models": models}))
    found = student_figures(run_dir)
    assert found[0]["steps"] == 60 and found[0]["evaluation"]["models"]["student"]["rouge_l"] == 0.14
    _, paths = write_report(run_dir)
    html = paths["report"].read_text()
    assert "held-out loss 1.4 → 0.86" in html and "Evaluation on 40 held-out tasks" in html
    check_report_page(html)
