"""Plain progress lines for output that is not a terminal (a log file, a pipe, CI).

A live progress bar shows nothing useful in a log; these lines do: `emit` prints one at once,
`maybe` prints one if none was printed for `interval_s`, and a heartbeat thread calls `maybe` so a
line still comes while nothing else happens (a long step, a slow reply). The clock is injectable so
tests can drive the interval without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO


def duration(seconds: float) -> str:
    """`42s`, `9m05s`, `1h02m`: short enough for a progress line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class LinePrinter:
    """Prints progress lines to `stream`, flushed, at least every `interval_s` while a heartbeat runs."""

    def __init__(
        self,
        stream: TextIO,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "",
    ):
        self.stream = stream
        self.interval_s = interval_s
        self.clock = clock
        self.prefix = prefix
        self._last: float | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, text: str) -> None:
        """Print a line now."""
        with self._lock:
            self.stream.write(f"{self.prefix}{text}\n")
            self.stream.flush()
            self._last = self.clock()

    def maybe(self, make_text: Callable[[], str]) -> None:
        """Print `make_text()` if no line was printed for `interval_s` (or none yet)."""
        with self._lock:
            if self._last is None or self.clock() - self._last >= self.interval_s:
                self.emit(make_text())

    def start_heartbeat(self, make_text: Callable[[], str]) -> None:
        """From now on a line comes at least every `interval_s` seconds, even while nothing reports."""
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(min(1.0, self.interval_s / 10)):
                self.maybe(make_text)

        self._thread = threading.Thread(target=beat, name="progress-lines", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def line_tqdm(
    prefix: str, stream: TextIO, interval_s: float = 30.0, extra: Callable[[], str] | None = None
) -> type:
    """A `tqdm` class that draws no bar but prints plain lines: one when it starts, one at least every
    `interval_s` seconds, and one when it closes (`desc n/total · postfix · elapsed · eta`, with
    `extra()`, read at each line, in place of the postfix when given).

    For libraries that take a tqdm class for their progress (vLLM's `use_tqdm`) when the output is a
    log: a bar drawn into a file is a stream of carriage returns, not lines.
    """
    import io

    from tqdm import tqdm

    class LineTqdm(tqdm):
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["file"] = io.StringIO()  # the bar itself is drawn nowhere
            super().__init__(*args, **kwargs)
            self._lines = LinePrinter(stream, interval_s, prefix=prefix)
            self._lines.emit(self._status())
            self._lines.start_heartbeat(self._status)

        def _status(self) -> str:
            elapsed = self.format_dict["elapsed"]
            total = self.total or 0
            eta = duration(elapsed / self.n * (total - self.n)) if self.n and total else "?"
            what = (self.desc or "done").rstrip(": ").lower()
            postfix = extra() if extra is not None else self.postfix
            postfix = f" · {postfix}" if postfix else ""
            return f"{what} {self.n}/{total}{postfix} · elapsed {duration(elapsed)} · eta {eta}"

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            self._lines.maybe(self._status)
            return shown

        def close(self) -> None:
            lines = getattr(self, "_lines", None)
            if lines is not None and not self.disable:
                lines.stop_heartbeat()
                lines.emit(self._status())
            super().close()

    return LineTqdm
