"""`selfinstruct model`: where the bundled model is, converting it on first use."""

from __future__ import annotations

import click

from pipeline.core.console import console


@click.group()
def model() -> None:
    """The embedded default model (SmolLM2-135M-Instruct)."""


@model.command("path")
def model_path() -> None:
    """Print the converted Hugging Face folder of the bundled model (converts it once)."""
    from pipeline.core.model import bundled_gguf_path, bundled_model_dir

    with console.status(f"converting {bundled_gguf_path().name} to a Hugging Face folder (once)"):
        path = bundled_model_dir()
    click.echo(str(path))
