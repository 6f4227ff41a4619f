"""A short real LoRA run on the bundled model: loss goes down, the adapter is real, a kill resumes,
the merged model loads in vLLM, and evaluation compares base and student."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tuning_data import make_corpus

from pipeline.core.model import bundled_model_dir
from tuning.config import EngineSettings, EvalConfig, TrainConfig
from tuning.data import load_splits
from tuning.train import lora_weight_stats, train

pytestmark = pytest.mark.slow

SMALL = {
    "max_steps": 8,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "warmup_steps": 0,
    "learning_rate": 1e-3,
    "eval_steps": 4,
    "save_steps": 4,
    "logging_steps": 2,
    "torch_threads": 1,
    "test_size": 0.1,
}
ENGINE = EngineSettings(max_model_len=1024, gpu_memory_utilization=0.3)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "corpus.json"
    path.write_text(json.dumps(make_corpus()))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_file) -> tuple[dict, Path]:
    config = TrainConfig(**SMALL, merge=True)
    train_examples, test_examples, _ = load_splits(data_file, config.test_size, config.seed)
    out = tmp_path_factory.mktemp("student")
    summary = train(train_examples, test_examples, config, out, quiet=True, data_source=str(data_file))
    return summary, out


def test_eval_loss_goes_down(trained):
    summary, out = trained
    assert summary["steps"] == 8 and summary["resumed_from_step"] == 0
    assert summary["eval_loss_after"] < summary["eval_loss_before"] - 0.2
    assert [h["step"] for h in summary["eval_history"]] == [4, 8]
    assert summary["tokens_per_s"] > 0 and summary["tokens"] > 0
    assert summary["truncated"] == 0 and summary["examples"]["train"]["kept"] == 54
    assert (
        json.loads((out / "train_summary.json").read_text())["eval_loss_after"] == summary["eval_loss_after"]
    )


def test_adapter_is_nonempty_and_reloads_with_peft(trained):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, out = trained
    adapter = out / "adapter"
    stats = lora_weight_stats(adapter)
    assert stats["lora_b"] == 60 and stats["lora_b_nonzero"] == 60  # q and v in each of 30 layers

    base = AutoModelForCausalLM.from_pretrained(str(bundled_model_dir()), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    ids = tokenizer("Spell the word apple backwards.", return_tensors="pt").input_ids
    with torch.no_grad():
        base_logits = base(ids).logits
    student = PeftModel.from_pretrained(base, str(adapter))
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    loaded = {n: p for n, p in student.named_parameters() if "lora_B" in n}
    assert len(loaded) == 60
    name = next(n for n in saved if "lora_B" in n and ".0." in n)
    match = next(
        p for n, p in loaded.items() if n.replace(".default", "").endswith(name.split("base_model.")[-1])
    )
    assert torch.equal(match.detach(), saved[name])
    with torch.no_grad():
        assert not torch.allclose(student(ids).logits, base_logits, atol=1e-3)


def test_merged_folder_keeps_the_training_tokenizer(trained):
    from transformers import AutoTokenizer

    from tuning.merge import check_merged, tokenizer_identity

    _, out = trained
    training = AutoTokenizer.from_pretrained(str(out / "adapter"))
    merged = AutoTokenizer.from_pretrained(str(out / "merged"))
    assert tokenizer_identity(merged) == tokenizer_identity(training)
    assert merged.eos_token == "<|im_end|>" and merged.chat_template == training.chat_template
    check_merged(out / "merged", training)
    # a different template is caught
    training.chat_template = training.chat_template + " "
    with pytest.raises(RuntimeError, match="chat_template"):
        check_merged(out / "merged", training)


@pytest.mark.engine
def test_merged_model_answers_in_vllm(trained):
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from pipeline.teachers.runtime import shutdown_engine
    from pipeline.teachers.vllm_local import build_llm
    from tuning.formats import render_prompt

    _, out = trained
    merged = out / "merged"
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    prompts = [render_prompt("chat", tokenizer, "Spell the word candle backwards.")]
    llm = build_llm(str(merged), ENGINE)
    try:
        outputs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)
    finally:
        shutdown_engine(llm)
    answer = outputs[0].outputs[0]
    assert answer.text.strip()
    assert answer.finish_reason in ("stop", "length")


@pytest.mark.engine
def test_evaluate_base_and_student_side_by_side(trained, data_file, tmp_path):
    from tuning.evaluate import evaluate, results_table

    _, out = trained
    tasks = tmp_path / "tasks.jsonl"
    rows = [
        {
            "id": "a",
            "instruction": "Spell the word orange backwards.",
            "instances": [{"input": "", "output": "egnaro"}],
        },
        {
            "id": "b",
            "instruction": "Write the given word in capital letters.",
            "instances": [{"input": "plum", "output": "PLUM"}],
        },
    ]
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = EvalConfig(tasks=str(tasks), max_tokens=24, loss_limit=6, engine=ENGINE)
    report = evaluate(config, out / "adapter", data_file, tmp_path / "eval", quiet=True)
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["models"] == report["models"]
    base, student = report["models"]["base"], report["models"]["student"]
    assert base["answers"] == student["answers"] == 2
    assert student["heldout_loss"] < base["heldout_loss"]
    # Scored on the held-out examples training recorded in the adapter, not on a split made again.
    assert report["heldout"]["record"] == str(out / "adapter" / "data_manifest.json")
    assert report["heldout"]["examples"] == 6
    assert (
        abs(student["heldout_loss"] - json.loads((out / "train_summary.json").read_text())["eval_loss_after"])
        < 0.3
    )
    for row in report["answers"]:
        assert {"base", "student"} <= set(row) and 0.0 <= row["student"]["rouge_l"] <= 1.0
    # the six measured rows, under the line that says no comparison of answer quality was made
    table = results_table(report)
    assert table.row_count == 8 and "NO comparison of answer quality" in str(table.columns[0]._cells[0])


def test_resume_after_kill(tmp_path, data_file):
    config = tmp_path / "train.yaml"
    settings = {**SMALL, "save_steps": 2, "eval_steps": 8}
    config.write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.cli", "train", "--data", str(data_file), "--config", str(config)]
    cmd += ["--out", str(out), "--quiet"]
    env = dict(os.environ)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert first.poll() is None, first.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    first.kill()  # SIGKILL: no clean-up at all
    first.wait()
    assert not (out / "train_summary.json").exists()
    complete = sorted(
        int(p.name.split("-")[1])
        for p in (out / "checkpoints").glob("checkpoint-*")
        if (p / "trainer_state.json").exists()
    )
    resume_step = complete[-1]
    assert 2 <= resume_step < 8
    before = json.loads((out / "eval_before.json").read_text())

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from_step"] == resume_step
    assert summary["steps"] == 8
    assert summary["eval_loss_before"] == round(before["eval_loss"], 6)
    assert lora_weight_stats(out / "adapter")["lora_b_nonzero"] == 60
