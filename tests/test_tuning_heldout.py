"""A run that grows after training: its held-out set stays the one training recorded.

`make generate` -> `make train` -> `make generate` (the run grows and its export re-splits) ->
`make train` -> `evaluate`, on a tiny run written with the real run-directory writer and a real
(two-step) LoRA training of the bundled model. The re-split moves a task the first training learned
into the held-out split: resuming the old checkpoints must be refused, and the adapter finally
evaluated must never be scored on an example it was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_tuning_data import WORDS

from pipeline.cli import main
from pipeline.core.jsonio import append_jsonl
from pipeline.core.model import bundled_model_dir
from pipeline.run.rundir import RunDir, RunState
from pipeline.run.schemas import Instance, MachineTask, TeacherIdentity
from tuning.config import EvalConfig

pytestmark = pytest.mark.slow

TEACHER = TeacherIdentity(backend="vllm", model="smollm2-135m-instruct", fingerprint="f")
TASKS_PER_ROUND = 8
TRAIN_YAML = """\
max_steps: 2
batch_size: 2
gradient_accumulation_steps: 1
warmup_steps: 0
learning_rate: 0.001
eval_steps: 2
save_steps: 2
logging_steps: 1
max_length: 96
max_eval_examples: 4
torch_threads: 1
contamination:
  enabled: false
"""


def commit_round(run: RunDir, round_no: int) -> None:
    """Append one round of kept tasks and commit it, as the generator does."""
    tasks = []
    for k in range(TASKS_PER_ROUND):
        n = (round_no - 1) * TASKS_PER_ROUND + k
        word = WORDS[n % len(WORDS)]
        instruction, answer = f"Spell the word {word} backwards.", word[::-1]
        if n >= len(WORDS):
            instruction, answer = f"Write the word {word} in capital letters.", word.upper()
        instances = [Instance(input="", output=answer)]
        if k % 2:
            instances.append(Instance(input="twice", output=answer * 2))
        tasks.append(
            MachineTask(
                id=f"r{round_no:04d}-{k:04d}",
                instruction=instruction,
                instances=instances,
                is_classification=False,
                round=round_no,
                method="self-instruct",
                teacher=TEACHER,
            )
        )
    append_jsonl(run.tasks_path, tasks)
    run.write_state(RunState(rounds_done=round_no, kept_total=round_no * TASKS_PER_ROUND))


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def export(run: RunDir) -> tuple[set[str], set[str]]:
    """`make generate`'s export (default test size and seed); the (train, test) task ids it wrote."""
    from datasets import load_from_disk

    result = cli("export", str(run.path), "--format", "hf", "-o", str(run.path / "export" / "hf"))
    assert result.exit_code == 0, result.output
    data = load_from_disk(str(run.path / "export" / "hf"))
    return set(data["train"]["task_id"]), set(data["test"]["task_id"])


def test_grown_run_never_scores_trained_examples_as_held_out(tmp_path: Path):
    from tuning.evaluate import heldout_losses, training_record

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config("method: self-instruct\n")
    config = tmp_path / "train.yaml"
    config.write_text(TRAIN_YAML)
    out = tmp_path / "student"
    train = ("train", "--data", str(run.path), "--config", str(config), "--out", str(out), "--quiet")

    commit_round(run, 1)
    first_train, _ = export(run)
    result = cli(*train)
    assert result.exit_code == 0, result.output
    first_record = (out / "adapter" / "data_manifest.json").read_text()
    assert set(json.loads(first_record)["train"]["task_ids"]) == first_train
    checkpoint_state = (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text()

    commit_round(run, 2)
    second_train, second_test = export(run)
    moved = first_train & second_test
    assert moved, "the re-split should hold out a task the first training learned"

    # Rerunning `make train` on the grown run: refused, nothing touched.
    result = cli(*train)
    assert result.exit_code == 2, result.output
    assert "different data" in result.output and "--force" in result.output
    assert f"{len(moved)} of the {len(second_test)} tasks held out now were trained on" in result.output
    assert (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text() == checkpoint_state
    assert (out / "adapter" / "data_manifest.json").read_text() == first_record

    # --force starts over from the base model on the new split.
    result = cli(*train, "--force")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from_step"] == 0 and summary["steps"] == 2

    # `evaluate --adapter OUT/adapter --data RUN`: its held-out part, on a run that has grown again.
    commit_round(run, 3)
    export(run)
    settings = EvalConfig(loss_limit=None, torch_threads=1)
    record = training_record(out / "adapter", run.path)
    losses = heldout_losses(str(bundled_model_dir()), out / "adapter", record, "chat", 96, settings, True)
    scored = set(losses["task_ids"])
    assert scored == second_test
    assert not scored & second_train
    assert losses["examples"] == sum(1 + int(t.split("-")[1]) % 2 for t in second_test)
    assert losses["student"] > 0 and losses["base"] > 0
