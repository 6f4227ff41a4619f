"""YAML configuration files as pydantic models, with errors that name the file, line and field.

Every command that takes `--config` goes through `load_config`: the YAML is parsed keeping each
key's line number, command-line overrides (dotted keys such as `teacher.model`) are laid on top,
and pydantic validates the result. A bad value says where it came from: a line of the file or the
command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.core.errors import InputFileError, UserError

M = TypeVar("M", bound=BaseModel)


def _line_map(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map each dotted key path in a composed YAML document to its 1-based line number."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            lines[key] = key_node.start_mark.line + 1
            lines.update(_line_map(value_node, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = (*prefix, str(index))
            lines[key] = item.start_mark.line + 1
            lines.update(_line_map(item, key))
    return lines


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a YAML mapping and its key lines; syntax errors name the line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: bad YAML: {exc.problem or exc}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise UserError(f"{path}, line 1: expected a mapping of settings, got {type(data).__name__}")
    return data, _line_map(node)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating the levels in between."""
    parts = dotted.split(".")
    target = data
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            target[part] = nxt
        target = nxt
    target[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any] | None) -> set[tuple[str, ...]]:
    """Lay command-line values (dotted keys; None means not given) over the file's; return their paths."""
    given: set[tuple[str, ...]] = set()
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        set_dotted(data, dotted, value)
        given.add(tuple(dotted.split(".")))
    return given


def _describe(
    exc: ValidationError, lines: dict[tuple[str, ...], int], from_cli: set[tuple[str, ...]]
) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err.get("loc", ()))
        field = ".".join(loc) or "(top level)"
        msg = "missing field" if err.get("type") == "missing" else err.get("msg", "invalid")
        if any(loc[: len(c)] == c for c in from_cli):
            out.append(f'command line, field "{field}": {msg}')
            continue
        probe = loc
        while probe and probe not in lines:
            probe = probe[:-1]
        where = f"line {lines[probe]}, " if probe else ""
        out.append(f'{where}field "{field}": {msg}')
    return out


def load_config(path: str | Path | None, model: type[M], overrides: Mapping[str, Any] | None = None) -> M:
    """Build `model` from an optional YAML file plus overrides; all problems are reported at once."""
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    if path is not None:
        data, lines = read_yaml(path)
    from_cli = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path is not None else "configuration"
        raise InputFileError(where, _describe(exc, lines, from_cli)) from None


def dump_config(config: BaseModel) -> str:
    """The resolved configuration as YAML, in field order, for the run directory."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
