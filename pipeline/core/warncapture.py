"""Our own warnings, caught to be shown our way; every other warning left to reach the user untouched.

`warnings.catch_warnings(record=True)` records every warning raised anywhere in the process while it
is open, vLLM's and the libraries' included, and those vanish unless the caller re-emits them. A
stage that wants to present its own warnings (once each, in its own style) records only those.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class PipelineWarning(UserWarning):
    """Base of the warnings this project raises for its commands to report (not for Python to print)."""


@contextmanager
def capture_warnings(*categories: type[Warning]) -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning of `categories` raised inside the block in the yielded list.

    Any other warning goes where it would have gone without this block (printed, turned into an
    error by `-W error`, logged by `logging.captureWarnings`, or recorded by an outer catcher).
    Like `warnings.catch_warnings`, the block changes process-wide state until it exits.
    """
    caught: list[warnings.WarningMessage] = []
    with warnings.catch_warnings():
        for category in categories:
            warnings.filterwarnings("always", category=category)
        show_elsewhere = warnings.showwarning

        def route(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, categories):
                caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
            else:
                show_elsewhere(message, category, filename, lineno, file, line)

        warnings.showwarning = route
        yield caught
