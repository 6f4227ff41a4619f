"""The review statistics against hand-computed fixtures, the sample and queues, the label store, the import,
and export/train on the people's word."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from judge_fakes import make_run, make_task, read_lines

from pipeline.cli import main
from pipeline.review.labels import PairLabel, ReviewStore, TaskLabel
from pipeline.review.sample import queues, stratified_order
from pipeline.review.stats import (
    consensus,
    judge_agreement,
    pairwise_summary,
    paper_table,
    threshold_table,
    wilson,
)
from pipeline.run.judgments import Judgment, append_judgments, task_digest
from pipeline.run.schemas import Instance, TeacherIdentity


def test_wilson_interval_matches_the_textbook_values():
    # Wilson 95% intervals as tabulated (Newcombe 1998, table I, method 3): 0/10, 5/10 and 81/263
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(0, 0) is None


def label(reviewer, task, vi, io, oo, digest=None, t=0.0):
    return TaskLabel(
        reviewer=reviewer,
        task_id=task.id,
        task_digest=digest or task_digest(task),
        instance=0,
        valid_instruction=vi,
        input_ok=io,
        output_ok=oo,
        created_at=t,
    )


def test_paper_table_and_majority_with_ties_counting_as_no():
    tasks = [make_task(1, k) for k in range(4)]
    labels = [
        label("a", tasks[0], True, True, True),
        label("a", tasks[1], True, False, True),
        label("a", tasks[2], True, True, True),
        label("b", tasks[2], True, True, False),  # a tie on output: no
        label("a", tasks[3], False, True, False),
    ]
    verdicts = consensus(labels)
    table = {row["key"]: row for row in paper_table(verdicts)["rows"]}
    assert (table["valid_instruction"]["yes"], table["valid_instruction"]["n"]) == (3, 4)
    assert table["input_ok"]["yes"] == 3 and table["output_ok"]["yes"] == 2
    assert table["all_valid"]["yes"] == 1 and table["all_valid"]["share"] == 0.25
    assert table["all_valid"]["ci95"] == pytest.approx(list(wilson(1, 4)))
    assert table["all_valid"]["paper"] == 0.54


def test_threshold_table_precision_recall_and_the_chosen_score():
    # (judge score, people's all-valid) for 8 tasks, worked by hand:
    pairs = [(5, True), (5, True), (4, True), (4, False), (3, True), (3, False), (2, False), (1, False)]
    table = threshold_table(pairs, target_precision=0.7)
    rows = {r["min_score"]: r for r in table["rows"]}
    # >= 1: all 8 kept, 4 good: precision 4/8, recall 4/4
    assert (rows[1]["kept"], rows[1]["precision"], rows[1]["recall"]) == (8, 0.5, 1.0)
    # >= 3: 6 kept, 4 good: precision 4/6, recall 1
    assert rows[3]["precision"] == pytest.approx(4 / 6) and rows[3]["recall"] == 1.0
    # >= 4: 4 kept, 3 good: precision 0.75, recall 0.75; the first to reach 0.7
    assert (rows[4]["kept"], rows[4]["precision"], rows[4]["recall"]) == (4, 0.75, 0.75)
    assert rows[4]["kept_share"] == 0.5 and table["chosen"] == 4
    assert rows[5]["precision"] == 1.0 and rows[5]["recall"] == 0.5
    assert threshold_table(pairs, target_precision=1.01)["chosen"] is None


def test_judge_agreement_against_people_with_kappa():
    tasks = [make_task(1, k) for k in range(4)]
    judge = TeacherIdentity(backend="openai", model="big-judge")
    labels = [label("a", t, True, True, k < 2) for k, t in enumerate(tasks)]
    judgments = {
        t.id: Judgment(
            task_id=t.id,
            status="scored",
            score=5 if k in (0, 2) else 2,
            valid_instruction=True,
            appropriate_input=True,
            correct_output=k in (0, 2),
            judge=judge,
            prompt_version="v1",
            task_digest=task_digest(t),
        )
        for k, t in enumerate(tasks)
    }
    (entry,) = judge_agreement(consensus(labels), {("openai", "big-judge", "", "v1"): judgments}, 0.8)
    output = entry["questions"]["output_ok"]
    # people: T T F F; judge: T F T F -> 2 of 4 agree; chance 0.5 -> kappa 0
    assert output["accuracy"] == 0.5 and output["kappa"] == pytest.approx(0.0)
    assert entry["questions"]["valid_instruction"]["kappa"] is None  # all yes on both sides
    assert entry["thresholds"]["rows"][4]["precision"] == 0.5


def pair(task_id, first, preference, r1="B", r2="C", reviewer="a"):
    return PairLabel(
        reviewer=reviewer,
        eval_id="e",
        task_id=task_id,
        pair_digest="d",
        first=first,
        order_seed=0,
        rating_first=r1,
        rating_second=r2,
        preference=preference,
    )


def test_pairwise_win_rate_counts_ties_half_and_maps_the_order():
    labels = [
        pair("t1", "student", "first"),  # student preferred: win
        pair("t2", "base", "second"),  # student preferred: win
        pair("t3", "base", "first"),  # base preferred: loss
        pair("t4", "student", "tie"),  # tie
        pair("t5", "base", "first", reviewer="a"),  # two reviewers split: 0 and 1 -> tie
        pair("t5", "base", "second", reviewer="b"),
    ]
    summary = pairwise_summary(labels)
    assert (summary["win"], summary["tie"], summary["loss"]) == (2, 2, 1)
    assert summary["win_rate"] == pytest.approx((1 + 1 + 0 + 0.5 + 0.5) / 5)
    low, high = summary["ci95"]
    assert 0.0 <= low <= summary["win_rate"] <= high <= 1.0
    # the first answer got B and the second C each time: the ratings follow the recorded order
    assert summary["ratings"]["student"] == {"A": 0, "B": 2, "C": 4, "D": 0}


def test_stratified_order_keeps_every_prefix_proportional_and_queues_overlap():
    strata = {f"a{k}": (1, None) for k in range(30)} | {f"b{k}": (2, None) for k in range(10)}
    order = stratified_order(strata, seed=5)
    assert sorted(order) == sorted(strata) and order != stratified_order(strata, seed=6)
    assert sum(t.startswith("b") for t in order[:20]) == 5  # 10 of 40 in stratum b -> 5 of 20
    ann, bo = queues(order, ["ann", "bo"], size=10, overlap=0.2, seed=5)
    assert len(set(ann.task_ids) & set(bo.task_ids)) == 2 and ann.shared == 2
    assert len(set(ann.task_ids) | set(bo.task_ids)) == 18
    (solo,) = queues(order, ["ann"], size=10, overlap=0.2, seed=5)
    assert sorted(solo.task_ids) == sorted(order[:10])


def test_a_skip_never_replaces_a_label_and_a_torn_tail_is_skipped(tmp_path):
    tasks = [make_task(1, k) for k in range(2)]
    run = make_run(tmp_path / "run", tasks)
    store = ReviewStore(run)
    store.append([label("a", tasks[0], True, True, True)])
    store.append(
        [TaskLabel(reviewer="a", task_id=tasks[0].id, task_digest=task_digest(tasks[0]), status="skipped")]
    )
    with store.path.open("a") as handle:
        handle.write('{"kind": "task", "revie')  # a write cut short by a kill
    (current,) = store.task_labels()
    assert current.all_valid and store.seen("a", "task") == {tasks[0].id}


def imported_run(tmp_path):
    tasks = [
        make_task(1, k, instances=[Instance(input="", output=f"Answer {k}."), Instance(output="Two.")])
        for k in range(6)
    ]
    return make_run(tmp_path / "run", tasks), tasks


def test_import_counts_like_page_labels_and_is_idempotent(tmp_path):
    run, tasks = imported_run(tmp_path)
    file = tmp_path / "labels.jsonl"
    lines = [
        {
            "task_id": tasks[k].id,
            "valid_instruction": True,
            "input_ok": True,
            "output_ok": k < 2,
            "reviewer": "sheet",
        }
        for k in range(4)
    ]
    lines[0]["instance"] = 1
    file.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = CliRunner().invoke(main, ["review", str(run), "--import", str(file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"lines": 4, "imported": 4, "already_present": 0}
    again = CliRunner().invoke(main, ["review", str(run), "--import", str(file), "--json"])
    assert json.loads(again.output) == {"lines": 4, "imported": 0, "already_present": 4}
    rows = read_lines(run / "reviews.jsonl")
    assert len(rows) == 4 and rows[0]["instance"] == 1 and rows[0]["source"] == "import:labels.jsonl"
    summary = json.loads(CliRunner().invoke(main, ["review", str(run), "--summary", "--json"]).output)
    table = {r["key"]: r for r in summary["table"]["rows"]}
    assert (table["all_valid"]["yes"], table["all_valid"]["n"]) == (2, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            {
                "task_id": "r9999-0000",
                "valid_instruction": True,
                "input_ok": True,
                "output_ok": True,
                "reviewer": "x",
            },
            "line 2, field \"task_id\": 'r9999-0000' is not a kept task",
        ),
        (
            {"task_id": "r0001-0001", "valid_instruction": True, "input_ok": True, "reviewer": "x"},
            'line 2, field "output_ok": missing field',
        ),
        (
            {
                "task_id": "r0001-0001",
                "valid_instruction": "yes",
                "input_ok": True,
                "output_ok": True,
                "reviewer": "x",
            },
            'line 2, field "valid_instruction"',
        ),
        (
            {
                "task_id": "r0001-0001",
                "valid_instruction": True,
                "input_ok": True,
                "output_ok": True,
                "reviewer": "x",
                "instance": 2,
            },
            'line 2, field "instance": 2 is out of range',
        ),
    ],
)
def test_import_names_the_file_line_and_field_and_writes_nothing(tmp_path, line, message):
    run, tasks = imported_run(tmp_path)
    good = {
        "task_id": tasks[0].id,
        "valid_instruction": True,
        "input_ok": True,
        "output_ok": True,
        "reviewer": "x",
    }
    file = tmp_path / "labels.jsonl"
    file.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    result = CliRunner().invoke(main, ["review", str(run), "--import", str(file)])
    assert result.exit_code == 2 and str(file) in result.output and message in result.output
    assert "Traceback" not in result.output
    assert not (run / "reviews.jsonl").exists()


def test_export_and_train_take_the_peoples_word(tmp_path):
    from pipeline.review.filters import ReviewFilter
    from tuning.data import load_splits

    run, tasks = imported_run(tmp_path)
    ReviewStore(run).append(
        [
            label("a", tasks[0], True, True, True),
            label("a", tasks[1], True, True, False),
            label("a", tasks[2], True, True, True),
        ]
    )

    def export(*flags):
        out = tmp_path / f"out{len(flags)}{flags[0]}.jsonl"
        result = CliRunner().invoke(
            main, ["export", str(run), "--format", "jsonl", "-o", str(out), "--json", *flags]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.output), {row["task_id"] for row in read_lines(out)}

    info, ids = export("--reviewed-only")
    assert ids == {tasks[0].id, tasks[2].id}
    assert info["review_filter"]["not_reviewed"] == 3 and info["review_filter"]["rejected_by_people"] == 1
    info, ids = export("--drop-rejected")
    assert ids == {t.id for t in tasks} - {tasks[1].id} and info["review_filter"]["kept_unreviewed"] == 3
    both = CliRunner().invoke(
        main,
        [
            "export",
            str(run),
            "--format",
            "jsonl",
            "-o",
            str(tmp_path / "x"),
            "--reviewed-only",
            "--drop-rejected",
        ],
    )
    assert both.exit_code == 2 and "exclude each other" in both.output
    train, test, source = load_splits(run, 0.0, 1, ReviewFilter(reviewed_only=True))
    assert {e["task_id"] for e in train} == {tasks[0].id, tasks[2].id} and "review filter" in source


def test_filters_need_labels_first(tmp_path):
    run, _ = imported_run(tmp_path)
    result = CliRunner().invoke(
        main, ["export", str(run), "--format", "jsonl", "-o", str(tmp_path / "o"), "--reviewed-only"]
    )
    assert result.exit_code == 2 and "no reviews.jsonl task labels" in result.output


def test_report_and_card_show_the_peoples_table_above_the_judges(tmp_path):
    from pipeline.report.card import render_card
    from pipeline.report.figures import compute_report, load_run
    from pipeline.report.html import render_html

    run, tasks = imported_run(tmp_path)
    judge = TeacherIdentity(backend="openai", model="big-judge")
    append_judgments(
        run,
        [
            Judgment(
                task_id=t.id,
                status="scored",
                score=5,
                valid_instruction=True,
                appropriate_input=True,
                correct_output=True,
                judge=judge,
                prompt_version="v1",
                task_digest=task_digest(t),
            )
            for t in tasks
        ],
    )
    ReviewStore(run).append([label("ann", tasks[k], True, True, k == 0) for k in range(4)])
    loaded = load_run(run)
    seeds_path, seeds = loaded.source.seeds()
    figures = compute_report(loaded, seeds, seeds_path, sample=0, verb_method="simple")
    html = render_html(figures, {}, "")
    section = html.split('<section id="review">')[1].split("</section>")[0]
    assert "25% (1/4)" in section and "54%" in section and "ann" in section
    assert "no --min-score reaches 80% precision" in section  # the judge says 5 to all; people: 1 of 4
    assert html.index('<section id="review">') < html.index('<section id="judge">')
    card = render_card(figures)
    assert card.index("### People's review") < card.index("### Judge")
    assert "| all three valid | 25% (1/4) |" in card


def test_evaluates_table_leads_with_the_peoples_verdict_or_says_none_was_made():
    from rich.console import Console

    from tuning.evaluate import results_table

    models = {"base": {"rouge_l": 0.1}, "student": {"rouge_l": 0.2}}
    report = {"n_tasks": 6, "prompt_format": "chat", "models": models, "pairwise": None}

    def text(rep):
        console = Console(width=200, record=True)
        console.print(results_table(rep))
        return [line for line in console.export_text().splitlines() if line.startswith("│")]

    assert "NO comparison of answer quality was made" in text(report)[0]
    human = pairwise_summary([pair("t1", "student", "second"), pair("t2", "base", "second")])
    rows = text({**report, "human": human})
    assert "people (blind): student win rate" in rows[0] and "50.0%" in rows[0]
    assert "1 / 0 / 1" in rows[1] and not any("NO comparison" in r for r in rows)


def test_a_rerun_of_evaluate_keeps_the_peoples_verdicts_only_for_the_same_answers(tmp_path):
    from pipeline.review.pairs import eval_id
    from tuning.evaluate import carry_human_review

    rows = [
        {
            "id": "t1",
            "instruction": "Say hi.",
            "input": "",
            "base": {"answer": "hi"},
            "student": {"answer": "hello"},
        }
    ]
    report = {"models": {"base": {}, "student": {}}, "answers": rows}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({**report, "human": {"eval_id": eval_id(report), "win": 1}}))
    same = json.loads(json.dumps(report))
    carry_human_review(path, same)
    assert same["human"] == {"eval_id": eval_id(report), "win": 1}
    changed = json.loads(json.dumps(report))
    changed["answers"][0]["student"]["answer"] = "hey"
    carry_human_review(path, changed)
    assert "human" not in changed
