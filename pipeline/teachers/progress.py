"""Teacher accounting as a live column of a rich progress display (requests, cache hits, tok/s, cost)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.text import Text

from pipeline.teachers.usage import Usage


class UsageColumn(ProgressColumn):
    """Renders `usage.describe()` on every refresh: `make_progress(extra=(UsageColumn(teacher.usage),))`."""

    def __init__(self, usage: Usage):
        super().__init__()
        self.usage = usage

    def render(self, task: Task) -> Text:
        return Text(self.usage.describe(), style="cyan")
