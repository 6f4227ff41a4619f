"""LoRA SFT of a student model with TRL's SFTTrainer, resumable after a kill.

Layout of the output folder:
  checkpoints/checkpoint-N/   the trainer's checkpoints (adapter, optimizer, scheduler, RNG, state)
  train_config.yaml           the resolved configuration (a resumed run must match it)
  data_manifest.json          what it trains on and holds out (tuning.record; a resumed run must match it)
  eval_before.json            held-out loss of the untouched model, measured once
  adapter/                    the final LoRA adapter, its tokenizer, selfinstruct_tuning.json and
                              a copy of data_manifest.json (the held-out set `evaluate` scores)
  merged/                     with --merge: the full merged model, loadable by vLLM
  launch.json                 how many processes trained it (a resumed run must use as many)
  train_summary.json          the figures

Rerunning the same command after a kill resumes from the last complete checkpoint; a checkpoint
that a kill left half-written (no trainer_state.json, which the trainer writes last) is removed.
Checkpoints are only resumed on the same data split: after the run grew or was re-exported, the
command refuses until it is told to start over (`force`) or given a fresh folder.

Under `accelerate launch` or `torchrun` (tuning.distributed) the data is read, checked, encoded and
the folder prepared on the main process only; every process trains on its share of each batch; the
main process alone writes the files above (the Trainer adds its per-process RNG state to checkpoints).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.console import console
from pipeline.core.errors import UserError
from pipeline.core.jsonio import write_json_atomic, write_text_atomic
from pipeline.core.model import resolve_model
from pipeline.core.yamlconfig import dump_config
from tuning.config import TrainConfig
from tuning.data import EncodeStats, encode_examples
from tuning.distributed import LAUNCH_FILE, Launch, check_resume_launch, record_launch, run_on_main
from tuning.outputs import ADAPTER, CHECKPOINTS, MERGED, META_FILE, save_dir_atomic
from tuning.record import RECORD_FILE, DataRecord, build_record, describe_change, read_record, write_record

# Settings a resumed run must share with the run that wrote the checkpoints (the data: tuning.record;
# the number of processes: tuning.distributed): each changes what the optimizer steps do, or (the
# held-out cap) which examples "held-out loss before -> after" compares. Run length may change.
RESUME_KEYS = (
    "base_model",
    "prompt_format",
    "max_length",
    "overlength",
    "lora",
    "batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_scheduler",
    "warmup_steps",
    "weight_decay",
    "seed",
    "test_size",
    "max_eval_examples",
)


def quiet_libraries() -> None:
    """Our own progress display replaces the libraries' per-step bars and map() bars."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint with its trainer_state.json; newer half-written ones are deleted."""
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        name = child.name
        if child.is_dir() and name.startswith("checkpoint-") and name[len("checkpoint-") :].isdigit():
            found.append((int(name[len("checkpoint-") :]), child))
    for _, child in sorted(found, reverse=True):
        if (child / "trainer_state.json").exists():
            return child
        console.print(f"[yellow]removing incomplete checkpoint {child} (the run was killed while saving it)")
        shutil.rmtree(child, ignore_errors=True)
    return None


def check_resume_config(out: Path, config: TrainConfig) -> None:
    """Refuse to resume checkpoints written with any other of the RESUME_KEYS, listing each change.

    A key the saved config lacks (written before it was a setting) takes its default there.
    """
    import yaml

    saved_path = out / "train_config.yaml"
    if not saved_path.exists():
        return
    saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    now = config.model_dump(mode="json")
    defaults = TrainConfig().model_dump(mode="json")
    changed = [
        f"{key}: {saved.get(key, defaults.get(key))!r} -> {now.get(key)!r}"
        for key in RESUME_KEYS
        if saved.get(key, defaults.get(key)) != now.get(key)
    ]
    if changed:
        raise UserError(
            f"{out} holds checkpoints of a run with other settings ({'; '.join(changed)}; see "
            f"{saved_path}); resuming would change what the run computes. Start over with --force "
            "or train into a fresh --out"
        )


def check_resume_data(out: Path, record: DataRecord) -> None:
    """Refuse to resume checkpoints trained on other data: resuming would mix the two training sets
    and leave examples the checkpoints learned in the new held-out split."""
    saved = read_record(out)
    if saved is None:
        raise UserError(
            f"{out} holds checkpoints but no record of the data they were trained on ({RECORD_FILE}; "
            "older versions wrote none), so resuming could mix data; start over with --force "
            "or train into a fresh --out"
        )
    if saved.digest != record.digest:
        raise UserError(
            f"{out} holds checkpoints trained on different data than {record.data or 'the data'} gives now "
            f"({describe_change(saved, record)}); resuming would mix the two and score trained examples "
            "as held-out. Start over with --force (discards those checkpoints) or train into a fresh --out"
        )


# What `force` discards: everything a run keeps about its progress. adapter/ and merged/ stay until
# the new ones replace them, each with its own record of the data it was trained on.
RUN_STATE = (
    CHECKPOINTS,
    "eval_before.json",
    "train_summary.json",
    "train_config.yaml",
    RECORD_FILE,
    LAUNCH_FILE,
)


def discard_previous_run(out: Path, quiet: bool) -> None:
    """Start over in `out`: remove the checkpoints and figures of an earlier run."""
    found = [out / name for name in RUN_STATE if (out / name).exists()]
    for path in found:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if found and not quiet:
        console.print(f"--force: discarded the checkpoints and figures of the earlier run in {out}")


def prepare_output(
    out: Path, config: TrainConfig, record: DataRecord, force: bool, quiet: bool, launch: Launch = Launch()
) -> Path | None:
    """Make `out` ready for this run; return the checkpoint to resume, if any.

    The data record and the launch are written before the first step, so any checkpoint in `out`
    is known to belong to them.
    """
    out.mkdir(parents=True, exist_ok=True)
    if force:
        discard_previous_run(out, quiet)
    checkpoint = last_complete_checkpoint(out / CHECKPOINTS)
    if checkpoint is not None:
        check_resume_config(out, config)
        check_resume_data(out, record)
        check_resume_launch(out, launch, config.batch_size, config.gradient_accumulation_steps)
    write_record(out, record)
    record_launch(out, launch, config.batch_size, config.gradient_accumulation_steps)
    write_text_atomic(out / "train_config.yaml", dump_config(config))
    return checkpoint


def lora_weight_stats(adapter_dir: Path) -> dict[str, int]:
    """How many LoRA B matrices the saved adapter has and how many are non-zero.

    LoRA starts with B = 0, so an adapter whose B matrices are all zero learned nothing (or was
    saved from the wrong model: alpaca-lora #293).
    """
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    b_mats = [t for name, t in weights.items() if "lora_B" in name]
    return {
        "tensors": len(weights),
        "lora_b": len(b_mats),
        "lora_b_nonzero": sum(1 for t in b_mats if bool(t.abs().sum() > 0)),
    }


def planned_steps(n_train: int, config: TrainConfig, world_size: int = 1) -> int:
    """Optimizer steps for `epochs` passes over the data, capped by `max_steps` when set.

    transformers lets max_steps override epochs; here it is a cap, so a small corpus is not
    trained for many more passes than asked and a large one stops in time. With several processes
    each step consumes one batch per process.
    """
    per_epoch = math.ceil(n_train / (config.batch_size * config.gradient_accumulation_steps * world_size))
    steps = max(1, math.ceil(per_epoch * config.epochs))
    return min(steps, config.max_steps) if config.max_steps else steps


def _report_encoding(name: str, stats: EncodeStats, config: TrainConfig, quiet: bool) -> None:
    if stats.overlength and not quiet:
        what = "dropped" if config.overlength == "drop" else "truncated (no EOS)"
        console.print(
            f"[yellow]{name}: {stats.overlength} of {stats.examples} examples exceed max_length "
            f"{config.max_length} tokens and were {what}; longest {stats.longest} tokens"
        )
        for line in stats.overlength_examples:
            console.print(f"  {line}")


def load_tokenizer(base: str, prompt_format: str) -> Any:
    """The base model's tokenizer, with a pad token (EOS when it has none) and checked for the format."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.eos_token is None:
        raise UserError(f"{base}: the tokenizer has no EOS token, so the student could never learn to stop")
    if tokenizer.pad_token is None:
        # Padding positions are excluded by the attention mask and labelled -100, so EOS is safe here.
        tokenizer.pad_token = tokenizer.eos_token
    if prompt_format == "chat" and not tokenizer.chat_template:
        raise UserError(f"{base}: the tokenizer has no chat template; use prompt_format: alpaca")
    return tokenizer


def sft_args(config: TrainConfig, out: Path, max_steps: int, launch: Launch = Launch()) -> Any:
    """TRL's SFTConfig for this run: checkpoints under out/checkpoints, no tqdm, no reporting.

    Several processes on CPUs need `use_cpu` (else the Trainer finds no device to spread over).
    Every LoRA weight gets a gradient at every step, so DDP need not search for unused ones.
    """
    import torch
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        num_train_epochs=config.epochs,
        max_steps=max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        max_length=config.max_length,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        save_only_model=False,
        use_cpu=launch.cpu,
        ddp_find_unused_parameters=False if launch.distributed else None,
    )


def build_trainer(
    base: str,
    tokenizer: Any,
    train_rows: list[dict[str, list[int]]],
    eval_rows: list[dict[str, list[int]]],
    config: TrainConfig,
    out: Path,
    callbacks: list[Any],
    launch: Launch = Launch(),
) -> Any:
    """The SFTTrainer on pre-encoded rows (input_ids + labels, prompt masked) with a fresh LoRA adapter.

    TRL's own collator pads the rows and must keep our labels (TRL >= 0.19; older versions rebuild
    them from input_ids), which tests/test_tuning_collator.py checks on this very trainer.
    """
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, PrinterCallback
    from trl import SFTTrainer

    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=sft_args(config, out, planned_steps(len(train_rows), config, launch.world_size), launch),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=callbacks,
    )
    # Our progress bar replaces the trainer's raw log-dict printing.
    trainer.remove_callback(PrinterCallback)
    return trainer


def _encode_splits(
    train_examples: list[dict[str, str]],
    test_examples: list[dict[str, str]],
    tokenizer: Any,
    config: TrainConfig,
    quiet: bool,
) -> tuple[list[dict[str, list[int]]], list[dict[str, list[int]]], EncodeStats, EncodeStats]:
    train_rows, train_stats = encode_examples(
        train_examples, tokenizer, config.prompt_format, config.max_length, config.overlength
    )
    eval_source = test_examples[: config.max_eval_examples] if config.max_eval_examples else test_examples
    eval_rows, eval_stats = encode_examples(
        eval_source, tokenizer, config.prompt_format, config.max_length, config.overlength
    )
    _report_encoding("train", train_stats, config, quiet)
    _report_encoding("held-out", eval_stats, config, quiet)
    if not train_rows:
        raise UserError(f"no training example fits in max_length {config.max_length} tokens")
    if not eval_rows:
        raise UserError(f"no held-out example fits in max_length {config.max_length} tokens")
    return train_rows, eval_rows, train_stats, eval_stats


@dataclass(frozen=True)
class Prepared:
    """What the main process works out before training and hands to every process."""

    record: DataRecord
    checkpoint: Path | None
    base: str
    train_rows: list[dict[str, list[int]]]
    eval_rows: list[dict[str, list[int]]]
    train_stats: EncodeStats
    eval_stats: EncodeStats
    loss_before: float | None  # read back from eval_before.json on a resume; None = measure it
    start_step: int


def _prepare(
    train_examples: list[dict[str, str]],
    test_examples: list[dict[str, str]],
    config: TrainConfig,
    out: Path,
    sources: tuple[str, str],
    force: bool,
    quiet: bool,
    launch: Launch,
) -> Prepared:
    """The output folder, the base model and the encoded data: once, on the main process."""
    record = build_record(train_examples, test_examples, *sources)
    checkpoint = prepare_output(out, config, record, force, quiet, launch)
    base = resolve_model(config.base_model)
    tokenizer = load_tokenizer(base, config.prompt_format)
    train_rows, eval_rows, train_stats, eval_stats = _encode_splits(
        train_examples, test_examples, tokenizer, config, quiet
    )
    before_path = out / "eval_before.json"
    before = None
    start_step = 0
    if checkpoint is not None:
        start_step = int(_read_json(checkpoint / "trainer_state.json").get("global_step", 0))
        if before_path.exists():
            before = float(_read_json(before_path)["eval_loss"])
            if not quiet:
                console.print(f"resuming from {checkpoint} (held-out loss before training was {before:.4f})")
    return Prepared(
        record, checkpoint, base, train_rows, eval_rows, train_stats, eval_stats, before, start_step
    )


def _loss_before(trainer: Any, out: Path, prepared: Prepared, quiet: bool, launch: Launch) -> float:
    """Held-out loss of the untouched model: measured once per run (by every process together, as
    evaluation is shared out), written by the main process, read back on a resume."""
    if prepared.loss_before is not None:
        return prepared.loss_before
    n_eval = len(prepared.eval_rows)
    if not quiet:
        console.print(f"held-out loss before training ({n_eval} examples) ...")
    before = float(trainer.evaluate()["eval_loss"])
    if launch.is_main:
        write_json_atomic(out / "eval_before.json", {"eval_loss": before, "examples": n_eval})
    return before


def _eval_history(trainer: Any) -> tuple[list[dict[str, Any]], float]:
    """Every held-out loss the trainer logged, ending with one at the final step, and that last loss."""
    state = trainer.state
    history = [
        {"step": int(entry["step"]), "eval_loss": float(entry["eval_loss"])}
        for entry in state.log_history
        if "eval_loss" in entry
    ]
    if history and history[-1]["step"] == state.global_step:
        return history, history[-1]["eval_loss"]
    after = float(trainer.evaluate()["eval_loss"])
    history.append({"step": state.global_step, "eval_loss": after})
    return history, after


def save_adapter(
    trainer: Any,
    tokenizer: Any,
    base: str,
    config: TrainConfig,
    record: DataRecord,
    adapter_dir: Path,
    launch: Launch = Launch(),
) -> dict[str, int] | None:
    """Write the adapter folder atomically (weights, tokenizer, training facts, data record) and check
    that it learned something; return its weight counts (None on the other processes).

    Every process calls the Trainer's save_model: with sharded weights (FSDP, DeepSpeed ZeRO-3) it
    gathers them from all processes; only the main process writes.
    """
    from transformers.trainer import TRAINING_ARGS_NAME

    staging = adapter_dir.with_name(f".{adapter_dir.name}.tmp")
    if not launch.is_main:
        trainer.save_model(str(staging))
        return None
    meta = {
        "base_model": base,
        "base_model_name": config.base_model,
        "prompt_format": config.prompt_format,
        "max_length": config.max_length,
        "eos_token": tokenizer.eos_token,
        "lora_r": config.lora.r,
        "seed": config.seed,
        "world_size": launch.world_size,
        "per_device_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "effective_batch_size": config.batch_size * config.gradient_accumulation_steps * launch.world_size,
    }

    def write_adapter(tmp: Path) -> None:
        trainer.save_model(str(tmp))
        (tmp / TRAINING_ARGS_NAME).unlink(missing_ok=True)  # the checkpoints keep the arguments
        tokenizer.save_pretrained(str(tmp))
        write_json_atomic(tmp / META_FILE, meta)
        write_record(tmp, record)

    save_dir_atomic(adapter_dir, write_adapter)
    weights = lora_weight_stats(adapter_dir)
    if weights["lora_b"] == 0 or weights["lora_b_nonzero"] == 0:
        raise RuntimeError(
            f"{adapter_dir}: the saved adapter is empty ({weights}); training did not update it"
        )
    return weights


def train(
    train_examples: list[dict[str, str]],
    test_examples: list[dict[str, str]],
    config: TrainConfig,
    out: str | Path,
    *,
    quiet: bool = False,
    data_source: str = "",
    held_out_source: str = "",
    force: bool = False,
    contamination: dict[str, Any] | None = None,
    launch: Launch = Launch(),
) -> dict[str, Any] | None:
    """Train (or resume) a LoRA adapter; return the summary also written to train_summary.json.

    `force` starts over: the checkpoints of an earlier run in `out` are discarded, whatever data
    they were trained on. With several processes (`launch`), every process calls this; the examples
    are read on the main process only, and only the main process writes and returns the summary
    (the others return None). (Long only by the flat summary dict at its end.)
    """
    import torch

    from tuning.progress import RichProgressCallback

    quiet_libraries()
    quiet = quiet or not launch.is_main
    out = Path(out)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    sources = (data_source, held_out_source)
    prep = run_on_main(
        launch,
        lambda: _prepare(train_examples, test_examples, config, out, sources, force, quiet, launch),
    )
    tokenizer = load_tokenizer(prep.base, config.prompt_format)
    progress = RichProgressCallback(quiet=quiet)
    trainer = build_trainer(
        prep.base, tokenizer, prep.train_rows, prep.eval_rows, config, out, [progress], launch
    )
    before = _loss_before(trainer, out, prep, quiet, launch)

    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(prep.checkpoint) if prep.checkpoint else None)
    train_seconds = time.perf_counter() - started
    state = trainer.state
    session_tokens = state.num_input_tokens_seen - progress.start_tokens
    history, after = _eval_history(trainer)

    adapter_dir = out / ADAPTER
    weights = save_adapter(trainer, tokenizer, prep.base, config, prep.record, adapter_dir, launch)
    if not launch.is_main:
        return None
    merged_dir = None
    if config.merge:
        from tuning.merge import merge_adapter

        if not quiet:
            console.print("merging the adapter into the base model ...")
        merged_dir = merge_adapter(adapter_dir, out / MERGED)

    train_stats, eval_stats = prep.train_stats, prep.eval_stats
    summary = {
        "data": data_source,
        "data_digest": prep.record.digest,
        "base_model": prep.base,
        "prompt_format": config.prompt_format,
        "examples": {"train": train_stats.as_dict(), "held_out": eval_stats.as_dict()},
        "truncated": train_stats.overlength + eval_stats.overlength,
        "overlength_policy": config.overlength,
        "steps": int(state.global_step),
        "resumed_from_step": prep.start_step,
        "max_steps": int(state.max_steps),
        "epochs": round(float(state.epoch or 0.0), 4),
        "world_size": launch.world_size,
        "distributed_type": trainer.accelerator.distributed_type.value,
        "per_device_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "effective_batch_size": config.batch_size * config.gradient_accumulation_steps * launch.world_size,
        "wall_time_s": round(train_seconds, 2),
        "tokens": int(state.num_input_tokens_seen),
        "tokens_this_session": int(session_tokens),
        "tokens_per_s": round(session_tokens / train_seconds, 1) if train_seconds > 0 else 0.0,
        "train_loss": round(float(result.training_loss), 6),
        "eval_loss_before": round(before, 6),
        "eval_loss_after": round(after, 6),
        "eval_history": history,
        "adapter": str(adapter_dir),
        "adapter_weights": weights,
        "merged": str(merged_dir) if merged_dir else None,
        "contamination": contamination if contamination is not None else {"checked": False},
        "finished_at": time.time(),
    }
    write_json_atomic(out / "train_summary.json", summary)
    return summary


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8"))
