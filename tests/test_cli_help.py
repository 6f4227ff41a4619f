"""Every `--help` (issue 20, point 9): defaults shown, full sentences, the same spelling across commands."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import COMMANDS, main

CHOICE_LIST = re.compile(r"^[a-z0-9+._-]+: ")  # "alpaca: ...; jsonl: ..." explains each choice


def leaf_commands() -> list[tuple[str, ...]]:
    ctx = click.Context(main)
    out: list[tuple[str, ...]] = []
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        if isinstance(command, click.Group):
            out.extend((name, sub) for sub in command.list_commands(ctx))
        else:
            out.append((name,))
    return out


def contexts(path: tuple[str, ...]) -> tuple[click.Command, click.Context]:
    """The command at `path` and its context, made by the real group (its context settings apply)."""
    ctx = main.make_context("selfinstruct", list(path), resilient_parsing=True)
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.get_command(ctx, name)
        ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True)
    return command, ctx


@pytest.mark.parametrize("path", leaf_commands(), ids=" ".join)
def test_every_option_has_a_sentence_and_shows_its_default(path):
    command, ctx = contexts(path)
    for option in (p for p in command.params if isinstance(p, click.Option)):
        text = re.sub(r"\s*\[default: [^\]]*\]$", "", (option.help or "").strip())
        assert text, f"{' '.join(path)} {option.opts[0]}: no help"
        assert text[0].isupper() or text[0] in "`'-" or CHOICE_LIST.match(text), (option.opts, text)
        assert text.endswith("."), (option.opts, text)
        record = option.get_help_record(ctx)
        default = option.get_default(ctx, call=False)
        shown = not (option.required or option.hidden or option.show_default is False)
        unset = default is None or type(default).__name__ == "Sentinel"  # click's "no default"
        if shown and not unset and default not in (False, (), []):
            assert record is not None and "[default: " in record[1], (option.opts, record)


def test_generate_help_says_what_until_counts_and_that_base_url_repeats():
    text = " ".join(CliRunner().invoke(main, ["generate", "--help"]).output.split())
    assert "a total, not more on top" in text
    assert "repeat the flag for several replicas" in text
    assert "self-instruct: the paper's bootstrap" in text
    assert "[default: runs/default]" in text


def test_train_takes_json():
    command, _ = contexts(("train",))
    assert "--json" in {opt for p in command.params for opt in getattr(p, "opts", [])}
