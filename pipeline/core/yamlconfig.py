"""YAML configuration files as pydantic models, with errors that name the file, line and field.

Every command that takes `--config` goes through `load_config`: the YAML is parsed keeping each
key's line number, command-line overrides (dotted keys such as `teacher.model`) are laid on top,
and pydantic validates the result. A bad value says where it came from: a line of the file or the
command line.
"""

from __future__ import annotations

import types
import typing
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


def _duplicate_keys(node: yaml.Node, prefix: tuple[str, ...] = ()) -> list[str]:
    """Keys given twice in one mapping (YAML loaders keep the last silently): `line N: key "a.b" ...`."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            line = key_node.start_mark.line + 1
            first = seen.setdefault(str(key_node.value), line)
            if first != line:
                problems.append(f'line {line}, field "{".".join(key)}": given twice (first on line {first})')
            problems.extend(_duplicate_keys(value_node, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, (*prefix, str(index))))
    return problems


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}, line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a YAML mapping and its key lines; syntax errors, a key given twice and an empty file name
    the line (an empty file is a mistake: leaving `--config` out is how to ask for the defaults)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such config file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a YAML config file")
    text = _decode(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: bad YAML: {exc.problem or exc}") from None
    if data is None:
        raise UserError(
            f"{path}, line 1: the config file holds no settings; write some, or leave out --config "
            "to run with the defaults"
        )
    if not isinstance(data, dict):
        raise UserError(f"{path}, line 1: expected a mapping of settings, got {type(data).__name__}")
    duplicates = _duplicate_keys(node)
    if duplicates:
        raise InputFileError(str(path), duplicates)
    return data, _line_map(node)


def _numeric(annotation: Any) -> bool:
    """Whether a field takes an int or a float (and not a bool), through `X | None`."""
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else ()
    )
    kinds = [a for a in args if a is not type(None)] or [annotation]
    return bool(kinds) and all(k in (int, float) for k in kinds)


def bools_as_numbers(
    data: Any, model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Paths where `true`/`false` stands for a number: pydantic would take `true` as 1, a YAML slip."""
    found: list[tuple[str, ...]] = []
    if not isinstance(data, dict):
        return found
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        value, annotation = data[name], info.annotation
        if isinstance(value, bool) and _numeric(annotation):
            found.append((*prefix, name))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(bools_as_numbers(value, annotation, (*prefix, name)))
    return found


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


def _where(path: str | Path | None, problems: list[str]) -> str:
    """The name an error's header gives: the file, or the command line when every problem came from a flag."""
    if problems and all(p.startswith("command line") for p in problems):
        return "command line"
    return str(path) if path is not None else "configuration"


def load_config(path: str | Path | None, model: type[M], overrides: Mapping[str, Any] | None = None) -> M:
    """Build `model` from an optional YAML file plus overrides; all problems are reported at once."""
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    if path is not None:
        data, lines = read_yaml(path)
    from_cli = apply_overrides(data, overrides)
    problems: list[str] = []
    for loc in bools_as_numbers(data, model):
        where = f"line {lines[loc]}, " if loc in lines else ""
        problems.append(
            f'{where}field "{".".join(loc)}": expected a number, got {str(data_at(data, loc)).lower()}'
        )
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        problems += _describe(exc, lines, from_cli)
        raise InputFileError(_where(path, problems), problems) from None
    if problems:
        raise InputFileError(_where(path, problems), problems)
    return config


def data_at(data: Any, loc: tuple[str, ...]) -> Any:
    for part in loc:
        data = data[part]
    return data


def dump_config(config: BaseModel) -> str:
    """The resolved configuration as YAML, in field order, for the run directory."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
