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
