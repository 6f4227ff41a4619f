"""The training data record: digests, task ids, edits caught, resumes refused on other data, --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_tuning_data import make_corpus

from pipeline.core.errors import UserError
from tuning.config import TrainConfig
from tuning.data import load_splits
from tuning.record import RECORD_FILE, build_record, held_out_examples, read_record, write_record
from tuning.train import prepare_output


def with_ids(examples: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{**e, "task_id": f"t{i // 2}"} for i, e in enumerate(examples)]


def test_record_round_trips_and_catches_edits(tmp_path: Path):
    corpus = with_ids(make_corpus())
    record = build_record(corpus[:50], corpus[50:], str(tmp_path / "data"), "the export's test split")
    assert record.train.task_ids == [f"t{i}" for i in range(25)]
    assert record.held_out.task_ids == [f"t{i}" for i in range(25, 30)]
    write_record(tmp_path, record)
    again = read_record(tmp_path)
    assert again == record and held_out_examples(again) == corpus[50:]

    # The same examples in another order, or one changed output, are different data.
    assert build_record(corpus[:50][::-1], corpus[50:], "d", "").digest != record.digest
    changed = [dict(e) for e in corpus]
    changed[3]["output"] += "!"
    assert build_record(changed[:50], changed[50:], "d", "").train.digest != record.train.digest

    saved = json.loads((tmp_path / RECORD_FILE).read_text())
    saved["held_out"]["items"][0]["output"] = "something else"
    (tmp_path / RECORD_FILE).write_text(json.dumps(saved))
    with pytest.raises(UserError, match="do not match their recorded digest"):
        read_record(tmp_path)
    (tmp_path / RECORD_FILE).write_text("{")
    with pytest.raises(UserError, match="not a valid training data record"):
        read_record(tmp_path)
    assert read_record(tmp_path / "elsewhere") is None


def fake_checkpoint(out: Path) -> None:
    """A complete checkpoint as far as resuming is concerned (its trainer_state.json is written last)."""
    checkpoint = out / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 4}')


def test_resume_needs_the_same_data_and_force_starts_over(tmp_path: Path):
    config = TrainConfig()
    corpus = with_ids(make_corpus())
    out = tmp_path / "out"
    first = build_record(corpus[:50], corpus[50:], "run", "split")
    assert prepare_output(out, config, first, force=False, quiet=True) is None
    fake_checkpoint(out)
    (out / "eval_before.json").write_text('{"eval_loss": 3.0}')
    (out / "adapter").mkdir()
    assert prepare_output(out, config, first, force=False, quiet=True) == out / "checkpoints" / "checkpoint-4"

    # The run grew and was split again: task t1, trained on before, is held out now.
    grown = corpus + with_ids(make_corpus())[:4]
    train, held_out = [e for e in grown if e["task_id"] != "t1"], [e for e in grown if e["task_id"] == "t1"]
    second = build_record(train, held_out, "run", "split")
    with pytest.raises(UserError) as refused:
        prepare_output(out, config, second, force=False, quiet=True)
    message = str(refused.value)
    assert "different data" in message and "--force" in message and "fresh --out" in message
    assert "train 50 -> 60 examples" in message and "1 of the 1 tasks held out now were trained on" in message
    assert read_record(out) == first  # nothing was overwritten

    assert prepare_output(out, config, second, force=True, quiet=True) is None
    assert not (out / "checkpoints").exists() and not (out / "eval_before.json").exists()
    assert (out / "adapter").is_dir()  # replaced only when the new adapter is saved
    assert read_record(out) == second


def test_checkpoints_without_a_record_are_not_resumed(tmp_path: Path):
    out = tmp_path / "out"
    fake_checkpoint(out)
    record = build_record(make_corpus()[:50], make_corpus()[50:], "data.json", "")
    with pytest.raises(UserError, match="no record of the data they were trained on"):
        prepare_output(out, TrainConfig(), record, force=False, quiet=True)


def test_load_splits_keeps_task_ids(tmp_path: Path):
    from datasets import Dataset, DatasetDict

    corpus = with_ids(make_corpus())
    saved = tmp_path / "hf"
    DatasetDict(
        {"train": Dataset.from_list(corpus[:50]), "test": Dataset.from_list(corpus[50:])}
    ).save_to_disk(str(saved))
    train, test, _ = load_splits(saved)
    assert train == corpus[:50] and test == corpus[50:]
    flat = tmp_path / "data.json"
    flat.write_text(json.dumps(make_corpus()))
    train, test, _ = load_splits(flat, 0.1, 1)
    assert build_record(train, test, str(flat), "").train.task_ids is None
