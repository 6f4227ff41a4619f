"""Plain progress lines for logs: the interval rule (driven by a fake clock, never by waiting) and the ETA."""

from __future__ import annotations

import io
import re
import threading
from types import SimpleNamespace

from pipeline.core.lines import LinePrinter, duration
from pipeline.generate.config import GenerateConfig
from pipeline.generate.progress import eta_s


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_least_every_interval_and_not_more_often():
    clock = FakeClock()
    out = io.StringIO()
    printer = LinePrinter(out, interval_s=30, clock=clock, prefix="p: ")
    for t in (0, 10, 29.9, 30, 45, 59.9, 60.5, 61, 200):
        clock.now = t
        printer.maybe(lambda t=t: f"at {t}")
    assert out.getvalue().splitlines() == ["p: at 0", "p: at 30", "p: at 60.5", "p: at 200"]
    clock.now = 201
    printer.emit("round done")  # always printed, and restarts the interval
    clock.now = 230
    printer.maybe(lambda: "too soon")
    clock.now = 231
    printer.maybe(lambda: "due")
    assert out.getvalue().splitlines()[-2:] == ["p: round done", "p: due"]


def test_durations_read_well():
    assert [duration(s) for s in (0, 42.4, 60, 545, 3599, 3720, 36000)] == [
        "0s",
        "42s",
        "1m00s",
        "9m05s",
        "59m59s",
        "1h02m",
        "10h00m",
    ]


def test_eta_is_the_first_bound_reached():
    budget = GenerateConfig(time_budget=600)
    assert eta_s(budget, elapsed=100, rounds_run=0, kept_gained=0, kept_total=0) == 500
    assert eta_s(budget, elapsed=700, rounds_run=3, kept_gained=9, kept_total=9) == 0
    rounds = GenerateConfig(rounds=4)
    assert eta_s(rounds, elapsed=50, rounds_run=0, kept_gained=0, kept_total=0) is None  # not known yet
    assert eta_s(rounds, elapsed=100, rounds_run=1, kept_gained=5, kept_total=5) == 300
    both = GenerateConfig(rounds=4, time_budget=250)
    assert eta_s(both, elapsed=100, rounds_run=1, kept_gained=5, kept_total=5) == 150
    until = GenerateConfig(until=30, rounds=2)  # `until` replaces `rounds`
    assert eta_s(until, elapsed=50, rounds_run=1, kept_gained=10, kept_total=12) == 90
    assert eta_s(GenerateConfig(), elapsed=10, rounds_run=0, kept_gained=0, kept_total=0) is None


def test_the_heartbeat_prints_while_nothing_else_happens():
    """A long step with no event still shows up in the log (a short interval, lines awaited, no timing asserted)."""
    out = io.StringIO()
    printer = LinePrinter(out, interval_s=0.05)
    seen = threading.Event()

    def status() -> str:
        if out.getvalue().count("\n") >= 2:
            seen.set()
        return "still working"

    printer.start_heartbeat(status)
    try:
        assert seen.wait(30), out.getvalue()
    finally:
        printer.stop_heartbeat()
    assert set(out.getvalue().splitlines()) == {"still working"}


def test_training_prints_plain_lines_when_stdout_is_not_a_terminal(monkeypatch):
    from tuning.progress import RichProgressCallback

    out = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stdout", out)
    callback = RichProgressCallback(interval_s=0)
    state = SimpleNamespace(global_step=0, max_steps=4, num_input_tokens_seen=0)
    callback.on_train_begin(None, state, None)
    for step in range(1, 5):
        state.global_step, state.num_input_tokens_seen = step, 100 * step
        callback.on_log(None, state, None, logs={"loss": 2.0 / step})
        callback.on_step_end(None, state, None)
        if step == 2:
            callback.on_evaluate(None, state, None, metrics={"eval_loss": 1.25})
    callback.on_train_end(None, state, None)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train: step 0/4 · loss - · ")
    assert "train: step 2: held-out loss 1.2500" in lines
    steps = [
        line
        for line in lines
        if re.match(r"train: step \d/4 · loss \S+ · [\d,]+ tok/s · elapsed \S+ · eta \S+$", line)
    ]
    assert [s.split()[2] for s in steps] == ["0/4", "1/4", "2/4", "3/4", "4/4", "4/4"]
    assert steps[-1].startswith("train: step 4/4 · loss 0.5000") and steps[-1].endswith("eta 0s")
    assert callback.evals == [(2, 1.25)]


def test_a_tqdm_class_for_libraries_prints_lines_not_a_bar():
    """What evaluate hands vLLM (`use_tqdm`) in a log: lines with counts, elapsed and ETA, no bar."""
    from pipeline.core.lines import line_tqdm

    out = io.StringIO()
    bar = line_tqdm("evaluate: ", out, interval_s=3600)(total=40, desc="Processed prompts")
    bar.postfix = "est. speed input: 10.00 toks/s, output: 5.00 toks/s"
    for _ in range(40):
        bar.update(1)
    bar.close()
    bar.close()  # closing twice (tqdm's own __del__ does) prints nothing more
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the start and the end: the interval is an hour
    assert re.fullmatch(r"evaluate: processed prompts 0/40 · elapsed 0s · eta \?", lines[0])
    assert re.fullmatch(
        r"evaluate: processed prompts 40/40 · est\. speed input: 10\.00 toks/s, output: 5\.00 toks/s"
        r" · elapsed \d+s · eta 0s",
        lines[1],
    )
    assert "\r" not in out.getvalue()
