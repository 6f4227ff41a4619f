"""Base model and student side by side: answers from vLLM, ROUGE-L, clean endings, held-out loss.

The student is served through vLLM's LoRA support (one engine, the base weights once, the adapter
applied per request), or given as a merged model folder. Both models get the same prompts, in the
format the student was trained with, and greedy decoding so reruns compare. The held-out loss is
computed with transformers on the examples the adapter's training recorded as held out
(tuning.record); the split is never derived again, since the data may have grown since.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.core.console import console
from pipeline.core.errors import UserError
from pipeline.core.jsonio import write_json_atomic
from pipeline.core.lines import line_tqdm
from pipeline.core.model import resolve_model
from pipeline.teachers.engine import Machine, choose_dtype
from pipeline.teachers.runtime import ENGINE_LOG, EngineLog, shutdown_engine
from tuning.config import EvalConfig, default_tasks_path
from tuning.contamination import EvalTask, load_eval_tasks
from tuning.formats import render_prompt
from tuning.outputs import META_FILE
from tuning.record import RECORD_FILE, DataRecord, held_out_examples, read_record, task_ids
from tuning.scoring import score_answer, summarize


def read_adapter_meta(adapter: Path) -> dict[str, Any]:
    """The adapter's training facts (base model, prompt format, max length), checked for presence."""
    if not adapter.is_dir():
        raise UserError(f"{adapter}: no such adapter folder")
    if not (adapter / "adapter_config.json").exists():
        raise UserError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    meta_path = adapter / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    if "base_model" not in meta:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        meta["base_model"] = config.get("base_model_name_or_path")
    return meta


def progress_for(quiet: bool) -> bool | type:
    """vLLM's `use_tqdm`: nothing with --quiet, its bar in a terminal, plain lines in a log."""
    if quiet:
        return False
    if sys.stdout.isatty():
        return True
    return line_tqdm("evaluate: ", sys.stdout)


def _generate(
    llm: Any, prompts: list[str], params: Any, lora: Any, quiet: bool
) -> list[tuple[str, str, int]]:
    outputs = llm.generate(prompts, params, lora_request=lora, use_tqdm=progress_for(quiet))
    return [(o.outputs[0].text, o.outputs[0].finish_reason, len(o.outputs[0].token_ids)) for o in outputs]


def generate_answers(
    base: str,
    adapter: Path | None,
    prompts: list[str],
    config: EvalConfig,
    lora_rank: int,
    quiet: bool,
    log: EngineLog | None = None,
) -> dict[str, list[tuple[str, str, int]]]:
    """{"base": [...], "student": [...]} of (text, finish_reason, tokens) from one vLLM engine.

    vLLM's log lines go to `log` (default: a file in the cache), not to the terminal.
    """
    from pipeline.teachers.vllm_local import build_llm

    lora: dict[str, Any] = {}
    if adapter is not None:
        lora = {"enable_lora": True, "max_lora_rank": max(8, lora_rank), "max_loras": 1}
    llm = build_llm(base, config.engine, log=log, **lora)  # imports vLLM, its log lines to `log`
    try:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=config.temperature, max_tokens=config.max_tokens, seed=config.engine.seed
        )
        results = {"base": _generate(llm, prompts, params, None, quiet)}
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            request = LoRARequest("student", 1, str(adapter.resolve()))
            results["student"] = _generate(llm, prompts, params, request, quiet)
        return results
    finally:
        shutdown_engine(llm)
        del llm
        gc.collect()


def training_record(adapter: Path | None, data: Path) -> DataRecord:
    """The adapter's record of its held-out examples; refuse when there is none to read.

    Checked before any model loads. `data` must be what the adapter was trained on; a path that
    differs is only warned about, since the examples scored come from the record either way.
    """
    if adapter is None:
        raise UserError(
            "--data needs --adapter: the held-out loss is measured on the examples that adapter's "
            "training held out, as its training recorded them"
        )
    record = read_record(adapter)
    if record is None:
        raise UserError(
            f"{adapter}: no record of the examples its training held out ({RECORD_FILE}; adapters "
            "trained before selfinstruct wrote it have none), so the held-out loss cannot be measured "
            "without risking examples it was trained on: retrain it, or leave out --data"
        )
    if record.data_path and Path(data).resolve() != Path(record.data_path):
        console.print(
            f"[yellow]{adapter} was trained on {record.data}, not {data}; "
            f"its held-out loss is measured on the {record.held_out.examples} examples recorded then"
        )
    return record


def heldout_losses(
    base: str,
    adapter: Path,
    record: DataRecord,
    fmt: str,
    max_length: int,
    config: EvalConfig,
    quiet: bool,
) -> dict[str, Any]:
    """Held-out loss of base and student on the examples the adapter's training held out."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuning.data import encode_examples
    from tuning.loss import heldout_loss

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    test = held_out_examples(record)
    if config.loss_limit:
        test = test[: config.loss_limit]
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    rows, stats = encode_examples(test, tokenizer, fmt, max_length, "drop")
    if not rows:
        raise UserError(f"{adapter / RECORD_FILE}: no held-out example fits in {max_length} tokens")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    source = f"held out by training on {record.data} ({record.source})"
    if not quiet:
        console.print(f"held-out loss on {len(rows)} examples {source} ...")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    out: dict[str, Any] = {
        "examples": len(rows),
        "dropped_overlength": stats.dropped,
        "source": source,
        "record": str(adapter / RECORD_FILE),
        # The tasks of the examples considered (those over max_length are then dropped, not scored).
        "task_ids": task_ids(test),
    }
    out["base"] = heldout_loss(model, rows, pad, config.loss_batch_size)
    student = PeftModel.from_pretrained(model, str(adapter))
    out["student"] = heldout_loss(student, rows, pad, config.loss_batch_size)
    return out


def evaluate(
    config: EvalConfig,
    adapter: str | Path | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the evaluation, write eval.json under `out` (if given) and return its content."""
    from transformers import AutoTokenizer

    from tuning.train import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    adapter_path = Path(adapter) if adapter is not None else None
    if config.judge.enabled and adapter_path is None:
        raise UserError("--judge compares the base model with the student: give the student with --adapter")
    meta = read_adapter_meta(adapter_path) if adapter_path is not None else {}
    base = resolve_model(config.base_model or meta.get("base_model") or "bundled")
    fmt = config.prompt_format or meta.get("prompt_format") or "chat"
    max_length = config.max_length or int(meta.get("max_length", 256))
    record = training_record(adapter_path, Path(data)) if data is not None else None
    tasks_path = Path(config.tasks) if config.tasks else default_tasks_path()
    tasks: list[EvalTask] = load_eval_tasks(tasks_path)
    if config.limit:
        tasks = tasks[: config.limit]
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_path) if adapter_path is not None else base)
    if fmt == "chat" and not tokenizer.chat_template:
        raise UserError(f"{base}: the tokenizer has no chat template; use --prompt-format alpaca")
    prompts = [render_prompt(fmt, tokenizer, t.instruction, t.input) for t in tasks]

    if not quiet:
        who = "base model and student" if adapter_path is not None else "base model"
        console.print(f"answering {len(tasks)} tasks from {tasks_path} with the {who} ({fmt} format) ...")
    log = EngineLog(Path(out) / ENGINE_LOG) if out is not None else None
    answers = generate_answers(base, adapter_path, prompts, config, int(meta.get("lora_r", 8)), quiet, log)
    machine = Machine.detect()
    dtype = choose_dtype(config.engine.dtype, cuda=machine.cuda, cpu_flags=machine.cpu_flags)

    models: dict[str, Any] = {}
    per_task: list[dict[str, Any]] = [
        {"id": t.id, "instruction": t.instruction, "input": t.input, "reference": t.output} for t in tasks
    ]
    for name, outs in answers.items():
        scores = []
        for row, (text, finish, _) in zip(per_task, outs, strict=True):
            score = score_answer(text, finish, row["reference"], config.repeat_ngram, config.repeat_times)
            row[name] = {"answer": text, **score}
            scores.append(score)
        models[name] = summarize(scores, [n for _, _, n in outs])

    losses = None
    if record is not None and adapter_path is not None:
        losses = heldout_losses(base, adapter_path, record, fmt, max_length, config, quiet)
        for name in models:
            if name in losses:
                models[name]["heldout_loss"] = round(losses[name], 4)

    pairwise = None
    if config.judge.enabled:
        from pipeline.judge.pairwise import judge_pairs

        cache = Path(out) / "judge-cache" if out is not None else None
        pairwise = judge_pairs(per_task, config.judge, cache_dir=cache, quiet=quiet)

    report = {
        "base_model": base,
        "adapter": str(adapter_path) if adapter_path is not None else None,
        "prompt_format": fmt,
        "tasks": str(tasks_path),
        "n_tasks": len(tasks),
        "data": str(data) if data is not None else None,
        "heldout": {k: v for k, v in (losses or {}).items() if k not in ("base", "student")} or None,
        "settings": config.model_dump(mode="json"),
        "engine": {"dtype": dtype.dtype, "dtype_reason": dtype.reason},
        "models": models,
        "pairwise": pairwise,
        "seconds": round(time.perf_counter() - started, 1),
        "answers": per_task,
    }
    if out is not None:
        carry_human_review(Path(out) / "eval.json", report)
        write_json_atomic(Path(out) / "eval.json", report)
    return report


def carry_human_review(path: Path, report: dict[str, Any]) -> None:
    """Keep the people's blind verdicts (`review --pairwise`, eval.json's `human`) when an evaluation is
    rerun on the very same answers; answers that changed need a new review, which the labels' eval id says."""
    from pipeline.review.pairs import eval_id

    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    human = old.get("human") if isinstance(old, dict) else None
    if isinstance(human, dict) and "student" in report["models"] and human.get("eval_id") == eval_id(report):
        report["human"] = human


def results_table(report: dict[str, Any]) -> Any:
    """A rich table: one row per metric, one column per model, and the student's change."""
    from rich.table import Table

    models = report["models"]
    names = list(models)
    table = Table(title=f"evaluation on {report['n_tasks']} tasks ({report['prompt_format']} format)")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    if "student" in models:
        table.add_column("change", justify="right")
    from pipeline.judge.pairwise import add_pairwise_rows

    add_pairwise_rows(table, report)
    rows = [
        ("ROUGE-L vs reference", "rouge_l"),
        ("clean end (EOS, no repetition)", "clean_end"),
        ("stopped by EOS", "stopped"),
        ("runaway repetition", "repetitive"),
        ("held-out loss", "heldout_loss"),
        ("mean answer tokens", "mean_answer_tokens"),
    ]
    for label, key in rows:
        values = [models[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        cells = ["-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in values]
        if "student" in models:
            a, b = models["base"].get(key), models["student"].get(key)
            cells.append(
                f"{b - a:+.4g}" if isinstance(a, int | float) and isinstance(b, int | float) else "-"
            )
        table.add_row(label, *cells)
    return table
