"""Training progress on the terminal: a transformers callback that drives a rich progress bar.

The bar shows optimizer steps out of the total, the last logged training loss, tokens per second
(non-padding tokens, measured in this process so a resumed run reports its own speed) and the ETA;
each held-out evaluation prints one line. When stdout is not a terminal (a log, a pipe) the bar is
replaced by plain lines: one at least every `interval_s` seconds and one per evaluation. `quiet`
turns both off but the figures are still collected for train_summary.json.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.progress import TextColumn
from transformers import TrainerCallback

from pipeline.core.console import make_progress
from pipeline.core.lines import LinePrinter, duration


class RichProgressCallback(TrainerCallback):
    """Steps, loss, tokens/s and ETA while training; a line per evaluation."""

    def __init__(self, quiet: bool = False, interval_s: float = 30.0):
        self.quiet = quiet
        plain = not quiet and not sys.stdout.isatty()
        self.lines = LinePrinter(sys.stdout, interval_s, prefix="train: ") if plain else None
        self.progress = make_progress(
            quiet=quiet or plain,
            extra=(TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s")),
        )
        self.task: Any = None
        self.start_time = 0.0
        self.start_tokens = 0
        self.start_step = 0
        self.last_loss: float | None = None
        self.evals: list[tuple[int, float]] = []

    def tokens_per_second(self, state: Any) -> float:
        elapsed = time.perf_counter() - self.start_time
        tokens = state.num_input_tokens_seen - self.start_tokens
        return tokens / elapsed if elapsed > 0 else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time = time.perf_counter()
        self.start_tokens = state.num_input_tokens_seen
        self.start_step = state.global_step
        self.progress.start()
        self.task = self.progress.add_task(
            "training", total=state.max_steps, completed=state.global_step, loss="-", tps="-"
        )
        if self.lines is not None:
            self.lines.emit(self.status(state))
            self.lines.start_heartbeat(lambda: self.status(state))

    def on_step_end(self, args, state, control, **kwargs):
        if self.task is not None:
            self.progress.update(
                self.task, completed=state.global_step, tps=f"{self.tokens_per_second(state):,.0f}"
            )
        if self.lines is not None:
            self.lines.maybe(lambda: self.status(state))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and self.task is not None:
            self.last_loss = float(logs["loss"])
            self.progress.update(self.task, loss=f"{self.last_loss:.4f}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics:
            self.evals.append((state.global_step, float(metrics["eval_loss"])))
            if self.lines is not None:
                self.lines.emit(f"step {state.global_step}: held-out loss {metrics['eval_loss']:.4f}")
            elif not self.quiet:
                self.progress.console.print(
                    f"step {state.global_step}: held-out loss {metrics['eval_loss']:.4f}"
                )

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.stop()
        if self.lines is not None:
            self.lines.stop_heartbeat()
            self.lines.emit(self.status(state))

    def status(self, state: Any) -> str:
        """A plain progress line: steps done / total, last loss, tokens/s, elapsed, ETA."""
        elapsed = time.perf_counter() - self.start_time
        done = state.global_step - self.start_step
        left = state.max_steps - state.global_step
        eta = duration(elapsed / done * left) if done else "?"
        loss = f"{self.last_loss:.4f}" if self.last_loss is not None else "-"
        return (
            f"step {state.global_step}/{state.max_steps} · loss {loss} · "
            f"{self.tokens_per_second(state):,.0f} tok/s · elapsed {duration(elapsed)} · eta {eta}"
        )
