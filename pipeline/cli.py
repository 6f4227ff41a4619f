"""The `selfinstruct` command: one click group, each subcommand in its own module, imported lazily.

Lazy loading keeps `selfinstruct --help` and light commands fast: the heavy imports (torch, vLLM)
happen only inside the commands that need them.
"""

from __future__ import annotations

import importlib
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

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo(
                "\ninterrupted: everything finished so far is saved; rerun the same command to resume",
                err=True,
            )
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="selfinstruct")
def main() -> None:
    """Self-Instruct and Alpaca-style instruction data with an open teacher model.

    Seeds -> teacher -> parse -> quality filters -> ROUGE-L dedup -> export -> LoRA SFT -> evaluate.
    """


if __name__ == "__main__":  # pragma: no cover - the engine core is a spawned process
    sys.exit(main())
