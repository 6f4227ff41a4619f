"""The contamination check finds planted overlaps; answer scoring flags runaway repetition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from tuning.config import default_tasks_path
from tuning.contamination import EvalTask, describe_hits, find_contamination, load_eval_tasks
from tuning.scoring import repeated_ngram, score_answer, summarize

TASKS = [
    EvalTask("t1", "Suggest a name for a bakery that sells only sourdough bread.", "", "Crust & Culture"),
    EvalTask(
        "t2",
        "Summarize the paragraph in one sentence.",
        "The old lighthouse on the northern cliff was repaired last spring by a group of volunteers who "
        "spent every weekend scraping paint and replacing the broken glass of the lantern room.",
        "Volunteers repaired the old lighthouse last spring.",
    ),
]

CLEAN = [
    {
        "instruction": "List three uses for a paperclip.",
        "input": "",
        "output": "Hold paper, reset a device, a hook.",
    },
    {"instruction": "Translate 'good morning' into French.", "input": "", "output": "Bonjour."},
]


def test_clean_data_has_no_hits():
    assert find_contamination(CLEAN, TASKS) == []


def test_planted_paraphrase_and_copied_ngram_are_found():
    planted = [
        *CLEAN,
        {
            "instruction": "Suggest a name for a bakery that sells sourdough bread only.",
            "input": "",
            "output": "Rise.",
        },
        {
            "instruction": "Shorten this text.",
            # 13+ words copied from t2's input, with different punctuation and case
            "input": "Story: the OLD lighthouse, on the northern cliff, was repaired last spring by a group!",
            "output": "A lighthouse was fixed.",
        },
    ]
    hits = find_contamination(planted, TASKS, rouge_threshold=0.7, ngram=13)
    by_index = {h.train_index: h for h in hits}
    assert set(by_index) == {2, 3}
    assert by_index[2].task_id == "t1" and by_index[2].rouge_l > 0.7 and by_index[2].ngram is None
    assert by_index[3].task_id == "t2" and by_index[3].ngram is not None
    assert len(by_index[3].ngram.split()) == 13
    message = describe_hits(hits, len(planted), 13, 0.7)
    assert "2 of 4" in message and "t1" in message and "13 words" in message


def test_a_copied_ngram_from_another_task_keeps_the_rouge_hit_counted():
    """An example paraphrasing t1's instruction whose output copies 13 words of t2: both rules fire, on
    different tasks, and the report counts it as a ROUGE-L hit too, with its real best ROUGE-L."""
    both = {
        "instruction": "Suggest a name for a bakery that sells sourdough bread only.",
        "input": "",
        "output": "The old lighthouse on the northern cliff was repaired last spring by a group of friends.",
    }
    (hit,) = find_contamination([both], TASKS, rouge_threshold=0.7, ngram=13)
    assert hit.rouge_l > 0.7 and hit.task_id == "t1"
    assert hit.ngram is not None and hit.ngram_task_id == "t2"
    message = describe_hits([hit], 1, 13, 0.7)
    assert "(1 with instruction ROUGE-L > 0.7, 1 sharing a 13-word run)" in message
    assert "shares 13 words with t2" in message


def test_loads_the_user_oriented_tasks():
    path = default_tasks_path()
    if not path.exists():
        pytest.skip("../shared/reference is not present")
    tasks = load_eval_tasks(path)
    assert len(tasks) == 252
    assert all(t.instruction and t.output for t in tasks)
    assert sum(1 for t in tasks if t.input) > 100


def test_task_file_errors_name_the_line(tmp_path: Path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(
        json.dumps({"instruction": "ok", "output": "fine"}) + "\n" + json.dumps({"instruction": "x"}) + "\n"
    )
    with pytest.raises(UserError, match="line 2"):
        load_eval_tasks(path)


def test_repetition_and_clean_end():
    assert repeated_ngram("the cat sat. " * 2) is None
    loop = "I like it. " + "and then we went home " * 4
    assert repeated_ngram(loop) is not None
    clean = score_answer("Blue is a colour.", "stop", "Blue.")
    assert clean["clean_end"] and clean["rouge_l"] > 0
    assert not score_answer("Blue is a colour and", "length", "Blue.")["clean_end"]
    assert not score_answer(loop, "stop", "Blue.")["clean_end"]
    summary = summarize([clean, score_answer(loop, "stop", "x")], [5, 24])
    assert (
        summary["clean_end"] == 0.5 and summary["repetitive"] == 0.5 and summary["mean_answer_tokens"] == 14.5
    )
