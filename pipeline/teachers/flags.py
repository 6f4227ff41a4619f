"""The command-line flags that pick a teacher: one spelling for generate, judge and evaluate.

`--teacher vllm|openai`, `--model` and `--base-url` (repeatable) override a `TeacherConfig`; a command that
picks a second model (evaluate's judge) takes them with a prefix (`--judge-teacher`, ...). The backend
choices come from `TeacherConfig` itself, so a new backend reaches every command at once.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from pipeline.teachers.config import TeacherConfig

F = TypeVar("F", bound=Callable[..., Any])
BACKENDS: tuple[str, ...] = typing.get_args(TeacherConfig.model_fields["backend"].annotation)


@dataclass(frozen=True)
class TeacherFlags:
    """What the flags said; None (or no URL) where a flag was not given."""

    backend: str | None = None
    model: str | None = None
    base_urls: tuple[str, ...] = ()

    def overrides(self, key: str) -> dict[str, Any]:
        """Config overrides for the `TeacherConfig` at dotted `key` ("teacher", "evaluate.judge.teacher")."""
        return {
            f"{key}.backend": self.backend,
            f"{key}.model": self.model,
            f"{key}.base_urls": list(self.base_urls) or None,
        }


def teacher_flags(role: str, prefix: str = "") -> Callable[[F], F]:
    """Add `--[prefix]teacher`, `--[prefix]model` and `--[prefix]base-url` to a click command, for the model
    called `role` in their help; the command gets them as one `TeacherFlags` keyword, `[prefix_]teacher`."""
    dest = prefix.replace("-", "_")
    names = {f"_{dest}{field}": field for field in ("backend", "model", "base_urls")}

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {field: kwargs.pop(name) for name, field in names.items()}
            return command(*args, **kwargs, **{f"{dest}teacher": TeacherFlags(**given)})

        options = [
            click.option(
                f"--{prefix}teacher",
                f"_{dest}backend",
                type=click.Choice(BACKENDS),
                default=None,
                help=f"The {role}'s backend. vllm: in-process; openai: any OpenAI-compatible server "
                f"(--{prefix}base-url).",
            ),
            click.option(
                f"--{prefix}model",
                f"_{dest}model",
                default=None,
                help=f"The {role} model: a HF folder or hub name; 'bundled' = SmolLM2-135M.",
            ),
            click.option(
                f"--{prefix}base-url",
                f"_{dest}base_urls",
                multiple=True,
                help="A server URL ending in /v1 (the openai backend); repeat the flag for several replicas.",
            ),
        ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return typing.cast(F, wrapper)

    return decorate
