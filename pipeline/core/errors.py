"""Errors a user can fix. The CLI prints them as one clear message and exits with code 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input or an impossible request: say what is wrong and where, then exit 2."""

    exit_code = 2


class InputFileError(UserError):
    """One or more problems in an input file, each tied to a line and, where known, a field."""

    def __init__(self, path: str, problems: Iterable[str]):
        self.path = str(path)
        self.problems = list(problems)
        head = f"{self.path}: {len(self.problems)} problem(s)"
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        lines = [head, *(f"  {p}" for p in shown)]
        if more > 0:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))
