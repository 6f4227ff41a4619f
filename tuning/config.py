"""Training and evaluation settings, with documented defaults, loadable from YAML.

The defaults follow alpaca-lora (tloen/alpaca-lora, finetune.py): LoRA r 8, alpha 16, dropout 0.05
on q_proj/v_proj, learning rate 3e-4, cut-off length 256, micro batch 4 with 32 accumulation steps
(effective batch 128), 3 epochs, 100 warm-up steps, evaluation and checkpoints every 200 steps, at
most 3 checkpoints kept. configs/train.yaml shrinks the run to fit a laptop CPU; configs/train-gpu.yaml
shows GPU-sized settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.judge.config import JudgeConfig
from pipeline.teachers.config import EngineOptions
from tuning.formats import PromptFormat


def default_tasks_path() -> Path:
    """The held-out user-oriented evaluation tasks: ../shared/reference from the repository root."""
    return (
        Path(__file__).resolve().parents[1].parent
        / "shared"
        / "reference"
        / "user_oriented_instructions.jsonl"
    )


class LoraSettings(BaseModel):
    """The LoRA adapter (peft.LoraConfig)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, description="rank of the update matrices")
    alpha: int = Field(16, ge=1, description="lora_alpha: the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], min_length=1, description="module names to adapt"
    )


class ContaminationSettings(BaseModel):
    """The overlap check between the training data and the evaluation tasks, run before training."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    tasks: str | None = Field(None, description="evaluation task file; None = the user-oriented tasks")
    rouge_threshold: float = Field(
        0.7, gt=0.0, le=1.0, description="flag instruction pairs with ROUGE-L above this"
    )
    ngram: int = Field(13, ge=3, description="flag any shared run of this many words")
    fail: bool = Field(False, description="stop before training instead of only warning")
    show: int = Field(5, ge=0, description="examples shown in the warning")


class TrainConfig(BaseModel):
    """Everything `selfinstruct train` needs besides the data and output paths."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field("bundled", description="HF folder or hub id; 'bundled' = the embedded SmolLM2")
    prompt_format: PromptFormat = Field(
        "chat", description="alpaca (Stanford Alpaca bytes) or chat (template)"
    )
    max_length: int = Field(256, ge=8, description="cut-off length in tokens, prompt + response + EOS")
    overlength: Literal["drop", "truncate"] = Field(
        "drop",
        description="examples longer than max_length: drop them (default: no example ever loses its EOS) "
        "or truncate them (kept without EOS); they are counted and reported either way",
    )
    test_size: float = Field(
        0.05, gt=0.0, lt=1.0, description="held-out share carved from data that has no test split of its own"
    )
    max_eval_examples: int | None = Field(
        200, ge=1, description="cap on held-out examples scored at each evaluation (None = all)"
    )
    seed: int = 42

    lora: LoraSettings = Field(default_factory=LoraSettings)

    epochs: float = Field(3.0, gt=0.0, description="passes over the training data")
    max_steps: int | None = Field(
        None, ge=1, description="at most this many optimizer steps (a cap on epochs)"
    )
    batch_size: int = Field(4, ge=1, description="examples per forward pass (alpaca-lora's micro batch)")
    gradient_accumulation_steps: int = Field(32, ge=1, description="forward passes per optimizer step")
    learning_rate: float = Field(3e-4, gt=0.0)
    lr_scheduler: str = Field("linear", description="a transformers scheduler name")
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)
    logging_steps: int = Field(10, ge=1)
    eval_steps: int = Field(200, ge=1, description="held-out loss every this many steps (and at the end)")
    save_steps: int = Field(
        200, ge=1, description="checkpoint every this many steps; a killed run resumes there"
    )
    save_total_limit: int = Field(3, ge=1, description="checkpoints kept")
    bf16: bool = Field(False, description="bfloat16 mixed precision (GPUs; slow on most CPUs)")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory on big models")
    torch_threads: int | None = Field(None, ge=1, description="CPU threads for torch (None = torch's choice)")

    merge: bool = Field(False, description="also write a merged full model folder (out/merged)")
    contamination: ContaminationSettings = Field(default_factory=ContaminationSettings)
    evaluate: EvalConfig = Field(
        default_factory=lambda: EvalConfig(), description="what `selfinstruct evaluate --config` reads"
    )


class EngineSettings(EngineOptions):
    """The evaluation engine: the one vLLM `EngineOptions` model, with a 2048-token default context."""

    max_model_len: int | None = Field(2048, ge=16, description="context length (None: the model's)")


class EvalConfig(BaseModel):
    """Everything `selfinstruct evaluate` needs besides the paths."""

    model_config = ConfigDict(extra="forbid")

    base_model: str | None = Field(None, description="None = the adapter's base model, else the bundled one")
    prompt_format: PromptFormat | None = Field(
        None, description="None = the format the adapter was trained with"
    )
    tasks: str | None = Field(None, description="task file; None = the user-oriented tasks")
    limit: int | None = Field(None, ge=1, description="first N tasks only")
    max_tokens: int = Field(256, ge=1, description="answer length cap; an answer that hits it did not end")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy, so runs compare")
    repeat_ngram: int = Field(4, ge=2, description="runaway repetition: a run of this many words ...")
    repeat_times: int = Field(4, ge=2, description="... occurring at least this many times")
    loss_limit: int | None = Field(200, ge=1, description="held-out examples scored for loss (None = all)")
    loss_batch_size: int = Field(8, ge=1)
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for the loss (None = torch's choice)"
    )
    max_length: int | None = Field(None, ge=8, description="held-out loss cut-off; None = the adapter's")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig, description="`enabled` (or --judge): compare base and student pairwise"
    )


TrainConfig.model_rebuild()
