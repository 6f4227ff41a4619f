"""The `selfinstruct` command: one click group, each subcommand in its own module, imported lazily.

Lazy loading keeps `selfinstruct --help` and light commands fast: the heavy imports (torch, vLLM)
happen only inside the commands that need them.
"""

from __future__ import annotations

import importlib
import json
import sys

import click

from pipeline import __version__
from pipeline.core.errors import UserError

# name -> "module:attribute" of a click command
COMMANDS: dict[str, str] = {
    "seeds": "pipeline.commands.seeds:seeds",
    "model": "pipeline.commands.model:model",
    "dedup": "pipeline.commands.dedup:dedup",
    "generate": "pipeline.commands.generate:generate",
    "export": "pipeline.commands.export:export",
    "judge": "pipeline.commands.judge:judge",
    "serve": "pipeline.commands.serve:serve",
    "report": "pipeline.commands.report:report",
    "push": "pipeline.commands.push:push",
    "status": "pipeline.commands.status:status",
    "select": "pipeline.commands.select:select",
    "review": "pipeline.commands.review:review",
    "train": "tuning.commands:train",
    "evaluate": "tuning.commands:evaluate",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use, and which turns `UserError` into exit 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `--json` anywhere after the subcommand asks for errors as JSON on stdout, too.
        ctx.meta["selfinstruct.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        as_json = bool(ctx.meta.get("selfinstruct.json"))
        try:
            return super().invoke(ctx)
        except UserError as exc:
            fail(ctx, str(exc), exc.exit_code, as_json, getattr(exc, "problems", None))
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: a real failure, with its traceback
                raise
            # The safety net behind each command's own checks: a path that cannot be read or written.
            fail(ctx, f"{exc.filename}: {exc.strerror or type(exc).__name__}", 2, as_json)
        except click.ClickException as exc:
            if as_json:
                click.echo(json.dumps({"error": exc.format_message(), "code": exc.exit_code}))
            raise
        except KeyboardInterrupt:
            click.echo(
                "\ninterrupted: everything finished so far is saved; rerun the same command to resume",
                err=True,
            )
            ctx.exit(130)


def fail(
    ctx: click.Context, message: str, code: int, as_json: bool, problems: list[str] | None = None
) -> None:
    """Print an error as one `error: ...` message on stderr (and with --json as an object on stdout), exit."""
    click.echo(f"error: {message}", err=True)
    if as_json:
        payload: dict[str, object] = {"error": message, "code": code}
        if problems:
            payload["problems"] = problems
        click.echo(json.dumps(payload, ensure_ascii=False))
    ctx.exit(code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="selfinstruct")
def main() -> None:
    """Self-Instruct and Alpaca-style instruction data with an open teacher model.

    Seeds -> teacher -> parse -> quality filters -> ROUGE-L dedup -> export -> LoRA SFT -> evaluate.
    """


if __name__ == "__main__":  # pragma: no cover - the engine core is a spawned process
    sys.exit(main())
