"""Using the judge's scores: `export --min-score/--require-valid`, `train --data RUN` with the same, the
report's judge section and the dataset card."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from judge_fakes import make_run, make_task, read_lines

from pipeline.cli import main
from pipeline.core.errors import UserError
from pipeline.core.model import BUNDLED_NAME
from pipeline.run.judgments import (
    UNFIT_JUDGE_NOTE,
    JudgeFilter,
    Judgment,
    append_judgments,
    read_judgments,
    task_digest,
)
from pipeline.run.schemas import Instance, TeacherIdentity
from tuning.data import load_splits

JUDGE = TeacherIdentity(backend="openai", model="fake-judge")
# task k: (status, score, valid instruction, appropriate input, correct output)
PLAN = {
    0: ("scored", 1, False, True, False),
    1: ("scored", 2, True, True, False),
    2: ("scored", 3, True, True, True),
    3: ("scored", 4, True, False, True),
    4: ("scored", 5, True, True, True),
    5: ("scored", 4, True, True, True),
    6: ("scored", 5, True, True, False),
    7: ("unscored", None, None, None, None),
    8: ("failed", None, None, None, None),
    # 9: never judged
    10: ("scored", 5, True, True, True),  # an earlier line said 1; the last line counts
    11: ("scored", 4, True, True, True),  # judged under other text: does not count
}


def judgment(task, status, score, valid, appropriate, correct, digest=None) -> Judgment:
    return Judgment(
        task_id=task.id,
        status=status,
        score=score,
        valid_instruction=valid,
        appropriate_input=appropriate,
        correct_output=correct,
        reason="because" if status == "scored" else "not_json: no JSON object in the reply",
        judge=JUDGE,
        prompt_version="v1",
        task_digest=digest or task_digest(task),
    )


@pytest.fixture()
def judged_run(tmp_path):
    tasks = [
        make_task(1, k, instances=[Instance(input=f"in {k}" if k % 2 else "", output=f"Answer number {k}.")])
        for k in range(12)
    ]
    run = make_run(tmp_path / "run", tasks)
    append_judgments(run, [judgment(tasks[10], "scored", 1, False, False, False)])
    append_judgments(
        run,
        [judgment(tasks[k], *plan, digest="0" * 16 if k == 11 else None) for k, plan in PLAN.items()],
    )
    return run


def ids(path) -> list[str]:
    return sorted({row["task_id"] for row in read_lines(path)})


def export(run, out, *flags) -> dict:
    result = CliRunner().invoke(
        main, ["export", str(run), "--format", "jsonl", "-o", str(out), "--json", *flags]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_export_min_score_and_require_valid_exact_counts(judged_run, tmp_path):
    info = export(judged_run, tmp_path / "a.jsonl", "--min-score", "4")
    assert ids(tmp_path / "a.jsonl") == ["r0001-0003", "r0001-0004", "r0001-0005", "r0001-0006", "r0001-0010"]
    assert info["tasks"] == 5 and info["examples"] == 5
    assert info["judge_filter"] == {
        "rule": "score >= 4",
        "kept": 5,
        "below_min_score": 3,
        "unscored": 2,
        "not_judged": 2,
    }
    info = export(judged_run, tmp_path / "b.jsonl", "--require-valid")
    assert ids(tmp_path / "b.jsonl") == ["r0001-0002", "r0001-0004", "r0001-0005", "r0001-0010"]
    assert info["judge_filter"]["not_all_valid"] == 4
    export(judged_run, tmp_path / "c.jsonl", "--require-valid", "--min-score", "4")
    assert ids(tmp_path / "c.jsonl") == ["r0001-0004", "r0001-0005", "r0001-0010"]
    export(judged_run, tmp_path / "d.jsonl")
    assert len(ids(tmp_path / "d.jsonl")) == 12  # no filter: everything

    text = CliRunner().invoke(
        main,
        ["export", str(judged_run), "--format", "alpaca", "-o", str(tmp_path / "e.json"), "--min-score", "5"],
    )
    assert (
        text.exit_code == 0 and "kept 3 tasks" in text.output and "5 below the minimum score" in text.output
    )
    assert len(json.loads((tmp_path / "e.json").read_text())) == 3


def test_filters_need_judgments_and_sane_values(tmp_path):
    run = make_run(tmp_path / "run", [make_task(1, 0)])
    result = CliRunner().invoke(
        main, ["export", str(run), "--format", "jsonl", "-o", str(tmp_path / "x"), "--min-score", "3"]
    )
    assert (
        result.exit_code == 2 and "selfinstruct judge" in result.output and "Traceback" not in result.output
    )
    result = CliRunner().invoke(
        main, ["export", str(run), "--format", "jsonl", "-o", str(tmp_path / "x"), "--min-score", "6"]
    )
    assert result.exit_code == 2
    with pytest.raises(UserError, match="1..5"):
        JudgeFilter(min_score=0)


def test_nothing_passing_is_an_error_not_an_empty_file(judged_run, tmp_path):
    for k in (4, 5, 6, 10):
        task = make_task(
            1, k, instances=[Instance(input=f"in {k}" if k % 2 else "", output=f"Answer number {k}.")]
        )
        append_judgments(judged_run, [judgment(task, "scored", 2, True, True, True)])
    result = CliRunner().invoke(
        main, ["export", str(judged_run), "--format", "jsonl", "-o", str(tmp_path / "x"), "--min-score", "5"]
    )
    assert result.exit_code == 2 and "no task passes the judge filter (score >= 5)" in result.output
    assert not (tmp_path / "x").exists()


def test_train_data_filtered_on_the_training_side_only(judged_run):
    train, test, _ = load_splits(judged_run, 0.25, 1)
    f_train, f_test, source = load_splits(judged_run, 0.25, 1, JudgeFilter(min_score=4))
    assert f_test == test  # the same held-out tasks as without a filter
    passing = {f"Answer number {k}." for k in (3, 4, 5, 6, 10)}
    assert f_train == [e for e in train if e["output"] in passing] and f_train
    assert "kept 5 of 12 tasks" in source
    with pytest.raises(UserError, match="need a run directory"):
        load_splits(judged_run / "machine_tasks.jsonl", 0.25, 1, JudgeFilter(require_valid=True))


def test_report_has_the_paper_table_and_the_card_states_the_judge(judged_run):
    from pipeline.report.card import render_card
    from pipeline.report.figures import compute_report, load_run
    from pipeline.report.html import render_html
    from pipeline.report.plots import make_plots

    run = load_run(judged_run)
    seeds_path, seeds = run.source.seeds()
    figures = compute_report(run, seeds, seeds_path, sample=0, verb_method="simple")
    judge = figures["judge"]
    assert (
        judge["tasks"],
        judge["judged"],
        judge["scored"],
        judge["unscored"],
        judge["failed"],
        judge["not_judged"],
    ) == (
        12,
        10,
        8,
        1,
        1,
        2,
    )
    assert judge["yes"] == {
        "valid_instruction": 7,
        "appropriate_input": 7,
        "correct_output": 5,
        "all_valid": 4,
    }
    assert judge["shares"]["all_valid"] == 4 / 8 and judge["paper"]["correct_output"] == 0.58
    assert judge["histogram"] == [
        {"score": s, "count": c} for s, c in zip(range(1, 6), (1, 1, 1, 2, 3), strict=True)
    ]
    assert [t["id"] for t in judge["lowest"][:3]] == ["r0001-0000", "r0001-0001", "r0001-0002"]
    assert judge["judges"] == [
        {"backend": "openai", "model": "fake-judge", "fingerprint": "", "prompt_version": "v1", "tasks": 10}
    ]
    assert len(read_judgments(judged_run)) == 11
    plots = make_plots(figures)
    html = render_html(figures, plots, "")
    section = html.split('<section id="judge">')[1].split("</section>")[0]
    assert (
        "50.0%" in section and "54.0%" in section and "r0001-0000" in section and "data:image/png" in section
    )
    card = render_card(figures)
    assert (
        "### Judge" in card
        and "`fake-judge` via openai" in card
        and "| all three valid | 50.0% (4) | 54% |" in card
    )
    assert judge["caution"] is None and "Caution" not in card and "Caution" not in section


def test_verdicts_of_the_bundled_model_carry_a_caution_everywhere(tmp_path):
    from pipeline.report.card import render_card
    from pipeline.report.figures import compute_report, load_run
    from pipeline.report.html import render_html

    tasks = [make_task(1, k) for k in range(4)]
    run = make_run(tmp_path / "run", tasks)
    bundled = TeacherIdentity(backend="vllm", model=BUNDLED_NAME, fingerprint="f")
    append_judgments(
        run, [judgment(t, "scored", 5, True, True, True).model_copy(update={"judge": bundled}) for t in tasks]
    )
    loaded = load_run(run)
    seeds_path, seeds = loaded.source.seeds()
    figures = compute_report(loaded, seeds, seeds_path, sample=0, verb_method="simple")
    assert figures["judge"]["shares"]["all_valid"] == 1.0 and figures["judge"]["caution"] == UNFIT_JUDGE_NOTE
    card = render_card(figures)
    assert f"**Caution:** {UNFIT_JUDGE_NOTE}" in card
    section = render_html(figures, {}, "").split('<section id="judge">')[1].split("</section>")[0]
    assert "<b>Caution:</b>" in section and "cannot judge" in section
