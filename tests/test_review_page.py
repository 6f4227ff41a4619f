"""The review page in real headless Chromium, driven from the keyboard as a reviewer would: labels are
durable at once, a killed server resumes where the reviewer stopped, overlapping reviewers give an
agreement figure, and the blind pairwise page never tells which model wrote which answer."""

from __future__ import annotations

import json
import signal

import pytest
from judge_fakes import make_run, make_task, read_lines
from review_browser import browser, review_server  # noqa: F401 (a fixture)

from pipeline.run.judgments import task_digest
from pipeline.run.schemas import Instance

pytestmark = pytest.mark.slow


def small_run(path, n=8):
    tasks = [
        make_task(
            1 + k % 2,
            k,
            instruction=f"Write a haiku about the number {k}.",
            instances=[Instance(input=f"mood {k}.{j}", output=f"Poem {k}.{j} line") for j in range(3)],
        )
        for k in range(n)
    ]
    return make_run(path, tasks), {t.id: t for t in tasks}


def progress(page) -> str:
    return page.locator("#progress").inner_text()


def wait_progress(page, text: str) -> None:
    page.wait_for_function(
        "t => document.getElementById('progress').textContent === t", arg=text, timeout=15_000
    )


def answer(page, keys: str, expect_next: str | None) -> None:
    """Press `keys`; then wait for the next item ("k of n"), or for the end of the queue (None)."""
    for key in keys:
        page.keyboard.press(key)
    if expect_next is None:
        page.wait_for_selector("#done-counts", timeout=15_000)
    else:
        wait_progress(page, expect_next)


def labelled_lines(run):
    path = run / "reviews.jsonl"
    return [row for row in read_lines(path) if row["status"] == "labelled"] if path.exists() else []


def test_five_tasks_from_the_keyboard_write_five_records(tmp_path, browser):  # noqa: F811
    run, tasks = small_run(tmp_path / "run")
    with review_server(run, "--sample", "5", "--seed", "7", "--reviewer", "ann") as (_, urls):
        page = browser.new_page()
        page.goto(urls["ann"])
        wait_progress(page, "1 of 5")
        shown = []
        for k, keys in enumerate(["yyy", "ynn", "nyy", "yyn", "nnn"]):
            shown.append(page.locator("#instruction").inner_text())
            if k == 1:  # a note, typed from the keyboard too
                page.keyboard.press("/")
                page.keyboard.type("input is odd")
                page.keyboard.press("Escape")
            answer(page, keys, f"{k + 2} of 5" if k < 4 else None)
        assert "All 5 done" in page.locator("#done").inner_text()
        page.close()
    rows = labelled_lines(run)
    assert len(rows) == 5 and len({r["task_id"] for r in rows}) == 5
    by_instruction = {tasks[r["task_id"]].instruction: r for r in rows}
    assert list(by_instruction) == shown  # the order given is the order shown
    first, second = (by_instruction[shown[0]], by_instruction[shown[1]])
    assert (first["valid_instruction"], first["input_ok"], first["output_ok"]) == (True, True, True)
    assert (second["valid_instruction"], second["input_ok"], second["output_ok"]) == (True, False, False)
    assert second["note"] == "input is odd"
    for row in rows:
        task = tasks[row["task_id"]]
        assert row["reviewer"] == "ann" and row["sample_seed"] == 7
        assert row["task_digest"] == task_digest(task) and 0 <= row["instance"] < 3
        assert row["created_at"] > 0


def test_a_killed_server_resumes_at_the_next_task_with_nothing_lost_or_doubled(tmp_path, browser):  # noqa: F811
    run, _ = small_run(tmp_path / "run")
    args = ("--sample", "5", "--reviewer", "bo")
    with review_server(run, *args) as (proc, urls):
        page = browser.new_page()
        page.goto(urls["bo"])
        wait_progress(page, "1 of 5")
        for k in range(3):
            answer(page, "yny", f"{k + 2} of 5")
        fourth = page.locator("#instruction").inner_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(labelled_lines(run)) == 3
    with review_server(run, *args) as (_, urls):
        page.goto(urls["bo"])  # a fresh load: the server says where bo stopped
        wait_progress(page, "4 of 5")
        assert page.locator("#instruction").inner_text() == fourth
        page.reload()
        wait_progress(page, "4 of 5")
        answer(page, "yyy", "5 of 5")
        page.keyboard.press("ArrowLeft")  # back to task 4: its answers are shown
        wait_progress(page, "4 of 5")
        assert "answered before" in page.locator("#status").inner_text()
        page.keyboard.press("ArrowRight")  # forward again without changing it
        wait_progress(page, "5 of 5")
        page.keyboard.press("s")  # skip the last one
        page.wait_for_selector("#done-counts")
        assert "4 labelled, 1 skipped" in page.locator("#done-counts").inner_text()
        page.close()
    rows = read_lines(run / "reviews.jsonl")
    labelled = [r for r in rows if r["status"] == "labelled"]
    assert len(labelled) == 4 and len({r["task_id"] for r in labelled}) == 4
    assert [r["status"] for r in rows].count("skipped") == 1


def test_two_reviewers_with_an_overlap_give_the_agreement(tmp_path, browser):  # noqa: F811
    run, _ = small_run(tmp_path / "run", n=12)
    args = ("--sample", "5", "--overlap", "0.4", "--reviewer", "ann", "--reviewer", "bo")
    with review_server(run, *args) as (_, urls):
        queues = {}
        for reviewer, keys in (("ann", "yyy"), ("bo", "ynn")):
            page = browser.new_page()
            page.goto(urls[reviewer])
            wait_progress(page, "1 of 5")
            for k in range(5):
                answer(page, keys, f"{k + 2} of 5" if k < 4 else None)
            page.close()
            queues[reviewer] = {r["task_id"] for r in labelled_lines(run) if r["reviewer"] == reviewer}
    shared = queues["ann"] & queues["bo"]
    assert len(shared) == 2 and len(queues["ann"] | queues["bo"]) == 8
    from click.testing import CliRunner

    from pipeline.cli import main

    result = CliRunner().invoke(main, ["review", str(run), "--summary", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    (pair,) = summary["reviewer_agreement"]
    assert pair["reviewers"] == ["ann", "bo"] and pair["tasks"] == 2
    questions = pair["questions"]
    assert questions["valid_instruction"]["agreement"] == 1.0
    assert questions["input_ok"]["agreement"] == 0.0 and questions["output_ok"]["agreement"] == 0.0
    # both always said the same on valid_instruction: kappa is undefined, not a made-up 1
    assert questions["valid_instruction"]["kappa"] is None
    assert summary["table"]["tasks"] == 8


def write_eval(path, n=6):
    rows = [
        {
            "id": f"user_task_{k}",
            "instruction": f"Give advice number {k}.",
            "input": "",
            "reference": "",
            "base": {"answer": f"Reply alpha {k}: drink water.", "rouge_l": 0.1},
            "student": {"answer": f"Reply omega {k}: take a walk.", "rouge_l": 0.2},
        }
        for k in range(n)
    ]
    report = {
        "base_model": "/models/secret-base-model-path",
        "adapter": "/runs/x/secret-adapter-path",
        "models": {"base": {}, "student": {}},
        "n_tasks": n,
        "answers": rows,
    }
    path.mkdir(parents=True)
    (path / "eval.json").write_text(json.dumps(report))
    return path


def test_the_pairwise_page_hides_which_model_wrote_which_answer(tmp_path, browser):  # noqa: F811
    run, _ = small_run(tmp_path / "run")
    evaluation = write_eval(tmp_path / "eval")
    bodies: list[str] = []
    with review_server(run, "--pairwise", str(evaluation), "--reviewer", "cy", "--seed", "3") as (_, urls):
        page = browser.new_page()
        page.on("response", lambda r: bodies.append(r.text()))
        page.goto(urls["cy"])
        wait_progress(page, "1 of 6")
        shown_first = []
        for k in range(6):
            dom = page.content()
            for secret in ("student", "base", "secret-", "adapter", "model"):
                assert secret not in dom.lower(), secret
            shown_first.append(page.locator("#first").inner_text())
            # always prefer the answer shown first, rating it A and the other C
            answer(page, "ac1", f"{k + 2} of 6" if k < 5 else None)
        page.close()
    for body in bodies:
        lowered = body.lower()
        assert '"student"' not in lowered and '"base"' not in lowered and "secret-" not in lowered
        assert "/runs/" not in lowered and "/models/" not in lowered
    rows = [r for r in read_lines(run / "reviews.jsonl") if r["kind"] == "pair"]
    assert len(rows) == 6
    firsts = [r["first"] for r in rows]
    assert set(firsts) == {"base", "student"}  # the order differs between tasks ...
    for row, text in zip(rows, shown_first, strict=True):  # ... and what was recorded is what was shown
        assert ("omega" in text) == (row["first"] == "student")
    report = json.loads((evaluation / "eval.json").read_text())
    human = report["human"]
    wins = firsts.count("student")
    assert (human["win"], human["tie"], human["loss"]) == (wins, 0, 6 - wins)
    assert human["win_rate"] == pytest.approx(wins / 6)
    assert human["ratings"]["student"]["A"] == wins and human["ratings"]["base"]["A"] == 6 - wins


def test_a_token_guards_every_request_and_the_printed_url_carries_it(tmp_path, browser):  # noqa: F811
    import urllib.error
    import urllib.request

    run, _ = small_run(tmp_path / "run")
    with review_server(run, "--sample", "2", "--reviewer", "dee", "--token", "s3cret") as (_, urls):
        url = urls["dee"]
        assert "token=s3cret" in url
        base = url.split("?")[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/session?reviewer=dee", timeout=10)
        assert refused.value.code == 401
        page = browser.new_page()
        page.goto(url)
        wait_progress(page, "1 of 2")
        answer(page, "yyy", "2 of 2")
        page.close()
    assert len(labelled_lines(run)) == 1


def test_a_port_in_use_is_one_clear_error(tmp_path):
    import socket

    from click.testing import CliRunner

    from pipeline.cli import main

    run, _ = small_run(tmp_path / "run")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["review", str(run), "--port", str(port)])
    assert result.exit_code == 2 and f"--port {port}: cannot serve there" in result.output
    assert "Traceback" not in result.output
