"""`selfinstruct train` with several processes: launch detection, resume rules, the accelerate presets,
and real two-process runs on CPU (gloo) through `accelerate launch` and `torchrun`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tuning_data import make_corpus

from pipeline.core.errors import UserError
from pipeline.core.model import bundled_model_dir
from tuning.config import TrainConfig
from tuning.distributed import (
    LAUNCH_FILE,
    Launch,
    check_resume_launch,
    launch_from_env,
    lone_process_warning,
    record_launch,
)
from tuning.record import build_record
from tuning.train import RESUME_KEYS, planned_steps, prepare_output

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "configs" / "accelerate"


def test_launch_from_env_reads_torchrun_and_mpi_variables():
    assert launch_from_env({}) == Launch(world_size=1, rank=0, cpu=False)
    two = launch_from_env({"WORLD_SIZE": "2", "RANK": "1", "ACCELERATE_USE_CPU": "True"})
    assert (two.world_size, two.rank, two.cpu, two.is_main, two.distributed) == (2, 1, True, False, True)
    mpi = launch_from_env(
        {"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "0", "ACCELERATE_USE_CPU": "1"}
    )
    assert (mpi.world_size, mpi.rank, mpi.is_main) == (4, 0, True)
    with pytest.raises(UserError, match="rank 3 of 2"):
        launch_from_env({"WORLD_SIZE": "2", "RANK": "3"})
    with pytest.raises(UserError, match="WORLD_SIZE"):
        launch_from_env({"WORLD_SIZE": "two"})


def test_accelerate_cpu_without_mpi_is_called_out():
    # What `accelerate launch --cpu --num_processes 2` leaves in the one process it starts.
    lone = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert "single training process" in lone_process_warning(lone)
    assert lone_process_warning({**lone, "WORLD_SIZE": "2", "RANK": "0"}) is None
    assert lone_process_warning({}) is None


def test_planned_steps_count_one_batch_per_process():
    config = TrainConfig(batch_size=4, gradient_accumulation_steps=2, epochs=1)
    assert planned_steps(100, config) == 13  # ceil(100 / 8)
    assert planned_steps(100, config, world_size=2) == 7  # ceil(100 / 16)
    assert planned_steps(100, config, world_size=4) == 4


def test_resume_needs_the_same_number_of_processes(tmp_path):
    check_resume_launch(tmp_path, Launch())  # folders from before launch.json: one process
    with pytest.raises(UserError, match="written by 1 training process"):
        check_resume_launch(tmp_path, Launch(world_size=2, rank=0, cpu=True))
    record_launch(tmp_path, Launch(world_size=2, rank=0, cpu=True), batch_size=4, accumulation=8)
    assert json.loads((tmp_path / LAUNCH_FILE).read_text())["effective_batch_size"] == 64
    check_resume_launch(tmp_path, Launch(world_size=2, rank=1, cpu=True))
    with pytest.raises(UserError, match="written by 2 training process"):
        check_resume_launch(tmp_path, Launch())


def test_resume_needs_the_same_effective_batch(tmp_path):
    record_launch(tmp_path, Launch(), batch_size=4, accumulation=8)
    check_resume_launch(tmp_path, Launch(), 4, 8)
    with pytest.raises(UserError, match=r"effective batch of 32 and this launch has 64 \(4 per device x 16"):
        check_resume_launch(tmp_path, Launch(), 4, 16)


CHANGES = {
    "gradient_accumulation_steps": 16,
    "learning_rate": 1e-4,
    "lr_scheduler": "cosine",
    "warmup_steps": 3,
    "weight_decay": 0.1,
    "max_eval_examples": 9,
    "test_size": 0.2,
}


@pytest.mark.parametrize(("key", "value"), sorted(CHANGES.items()))
def test_a_resume_with_a_setting_that_changes_the_result_is_refused(tmp_path, key, value):
    """Each such key refuses a resume, saying old -> new; --force starts over."""
    assert key in RESUME_KEYS
    examples = [{"instruction": f"task {k}", "input": "", "output": f"answer {k}"} for k in range(6)]
    record = build_record(examples[:4], examples[4:], "data.json", "alpaca")
    first = TrainConfig(max_eval_examples=6)
    out = tmp_path / "out"
    prepare_output(out, first, record, force=False, quiet=True)
    checkpoint = out / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    assert prepare_output(out, first, record, force=False, quiet=True) == checkpoint  # same: resumes
    later = first.model_copy(update={key: value, "max_steps": 50})  # the run's length may change
    before = getattr(first, key)
    with pytest.raises(UserError, match=f"{key}: {before!r} -> {value!r}"):
        prepare_output(out, later, record, force=False, quiet=True)
    assert prepare_output(out, later, record, force=True, quiet=True) is None  # --force starts over
    assert not checkpoint.exists()


@pytest.mark.parametrize(
    ("name", "kind"), [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed-zero3", "DEEPSPEED")]
)
def test_presets_are_valid_accelerate_configs(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = PRESETS / f"{name}.yaml"
    text = path.read_text()
    assert "When to use it" in text and "-m pipeline.cli train" in text
    config = load_config_from_file(str(path))
    assert config.distributed_type.value == kind and not config.use_cpu
    # Precision is the training config's (bf16:), never switched on behind its back by the launcher.
    assert config.mixed_precision == "no"
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # a loadable adapter
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.deepspeed_config["zero3_save_16bit_model"] is True


def test_deepspeed_is_an_optional_extra():
    tomllib = pytest.importorskip("tomllib")

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("deepspeed") for dep in project["optional-dependencies"]["deepspeed"])
    assert not any(dep.startswith("deepspeed") for dep in project["dependencies"])


# --- real runs with two processes (gloo on this CPU) ------------------------------------------------

SMALL = {
    "max_steps": 6,
    "batch_size": 2,
    "gradient_accumulation_steps": 1,
    "warmup_steps": 0,
    "learning_rate": 0.002,
    "eval_steps": 6,
    "save_steps": 2,
    "save_total_limit": 3,
    "logging_steps": 2,
    "torch_threads": 1,
    "test_size": 0.1,
    "max_eval_examples": 6,
    "max_length": 96,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def _accelerate_cmd(*train_args: str) -> list[str]:
    # accelerate's torch.distributed launcher; on a machine without GPUs our train runs it on the CPU
    # with gloo (`--cpu` would start one process: several CPU processes need MPI in accelerate).
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launcher += ["--num_machines", "1", "--num_cpu_threads_per_process", "1", "--mixed_precision", "no"]
    launcher += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    return [*launcher, "-m", "pipeline.cli", "train", *train_args]


def _workers(launcher: subprocess.Popen) -> list:
    import psutil

    try:
        children = psutil.Process(launcher.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "RANK" in child.environ() and "pipeline.cli" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


def _complete_checkpoints(out: Path) -> list[int]:
    return sorted(
        int(p.name.split("-")[1])
        for p in (out / "checkpoints").glob("checkpoint-*")
        if (p / "trainer_state.json").exists()
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.json"
    path.write_text(json.dumps(make_corpus()))
    return path


@pytest.mark.slow
def test_two_processes_train_resume_after_a_kill_and_write_once(tmp_path, corpus):
    config = tmp_path / "train.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in SMALL.items()))
    out = tmp_path / "out"
    cmd = _accelerate_cmd("--data", str(corpus), "--config", str(config), "--out", str(out))

    # First launch: kill one worker (SIGKILL) once a checkpoint is complete; the launcher stops the other.
    first_log = tmp_path / "first.log"
    with first_log.open("w") as sink:
        first = subprocess.Popen(cmd, env=_env(), stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 900
    while not _complete_checkpoints(out):
        assert first.poll() is None, first_log.read_text()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.5)
    workers = _workers(first)
    assert len(workers) == 2, [w.cmdline() for w in workers]
    victim = next(w for w in workers if w.environ()["RANK"] == "1")
    os.kill(victim.pid, signal.SIGKILL)
    first.wait(timeout=300)
    assert first.returncode != 0
    for worker in workers:
        assert not worker.is_running() or worker.status() == "zombie", "a worker outlived the launch"
    assert not (out / "train_summary.json").exists()
    resume_step = _complete_checkpoints(out)[-1]
    assert resume_step < SMALL["max_steps"]

    # Second launch: the same command resumes and finishes.
    second = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    log = second.stderr  # our console writes to stderr
    # The data was read and checked once, and one process reported.
    assert log.count("training examples; held-out") == 1
    assert log.count("contamination check") == 1
    assert log.count("training on 2 processes") == 1
    assert log.count("trained 6 steps") == 1

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["distributed_type"] == "MULTI_CPU"
    assert summary["effective_batch_size"] == 2 * 1 * 2
    assert summary["steps"] == 6 and summary["resumed_from_step"] == resume_step
    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    # Each process trained on its half of the data: 27 examples, 14 batches of 2 per epoch (one
    # process alone on all 54 would have 27 batches, and be at epoch 6/27 now).
    assert summary["epochs"] == pytest.approx(6 / 14, abs=0.001)

    # Exactly one adapter and one summary; no staging folders left behind.
    adapters = [p for p in out.rglob("adapter_model.safetensors") if "checkpoints" not in p.parts]
    assert adapters == [out / "adapter" / "adapter_model.safetensors"]
    assert list(out.rglob("train_summary.json")) == [out / "train_summary.json"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    # Both processes kept their own RNG state in the checkpoints (the trainer's per-process files).
    last = out / "checkpoints" / "checkpoint-6"
    assert {p.name for p in last.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}

    _adapter_beats_base_on_held_out(out / "adapter")


def _adapter_beats_base_on_held_out(adapter: Path) -> None:
    """Load the written adapter with peft and score the recorded held-out examples, base vs student."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuning.data import encode_examples
    from tuning.loss import heldout_loss
    from tuning.record import held_out_examples, read_record

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    record = read_record(adapter)
    rows, _ = encode_examples(held_out_examples(record), tokenizer, "chat", SMALL["max_length"], "drop")
    assert len(rows) == 6
    base = AutoModelForCausalLM.from_pretrained(str(bundled_model_dir()), dtype=torch.float32)
    base_loss = heldout_loss(base, rows, tokenizer.pad_token_id)
    student = PeftModel.from_pretrained(base, str(adapter))
    student_loss = heldout_loss(student, rows, tokenizer.pad_token_id)
    assert student_loss < base_loss


@pytest.mark.slow
def test_a_failed_check_on_the_main_process_stops_every_process_once(tmp_path, corpus):
    # Our own evaluation task that a training example copies: contamination.fail stops the run.
    tasks = tmp_path / "tasks.jsonl"
    example = make_corpus()[1]
    row = {"id": "x", "instruction": example["instruction"], "instances": [{"input": "", "output": "?"}]}
    tasks.write_text(json.dumps(row) + "\n")
    config = tmp_path / "train.yaml"
    config.write_text(f"contamination:\n  tasks: {tasks}\n  fail: true\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(_free_port()), "-m", "pipeline.cli", "train"]
    cmd += ["--data", str(corpus), "--config", str(config), "--out", str(out)]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1 and "contamination.fail" in result.stderr
    assert result.stderr.count("training examples; held-out") == 1
    assert not out.exists()  # nothing was prepared or written


@pytest.mark.slow
def test_two_torchrun_processes_record_their_world_size_and_effective_batch(tmp_path, corpus):
    """`torchrun --nproc_per_node 2` (gloo on CPU, a few steps): the adapter and train_summary.json say
    2 processes and the effective batch they trained with."""
    config = tmp_path / "train.yaml"
    small = {**SMALL, "max_steps": 2, "save_steps": 2, "eval_steps": 2, "gradient_accumulation_steps": 2}
    config.write_text("".join(f"{k}: {v}\n" for k, v in small.items()))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(_free_port()), "-m", "pipeline.cli", "train"]
    cmd += ["--data", str(corpus), "--config", str(config), "--out", str(out)]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.count("training on 2 processes") == 1
    meta = json.loads((out / "adapter" / "selfinstruct_tuning.json").read_text())
    summary = json.loads((out / "train_summary.json").read_text())
    for facts in (meta, summary):
        assert facts["world_size"] == 2
        assert facts["effective_batch_size"] == small["batch_size"] * 2 * 2
    assert summary["distributed_type"] == "MULTI_CPU" and summary["steps"] == 2
