"""Crash-safe JSON and JSONL files.

Append-only JSONL with a durable commit point: a batch of complete lines is written with one
`write`, flushed and fsynced. A kill can leave at most one torn last line (no trailing newline);
`repair_tail` cuts it off before the next append, and readers skip it. Whole files (configs,
summaries) are replaced atomically through a temporary file and `os.replace`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.core.errors import InputFileError, UserError

M = TypeVar("M", bound=BaseModel)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Replace `path` with `obj` as JSON so that readers see the old or the new file, never half."""
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, uniquely named file beside `path`, opened for writing.

    Created with mode 0o666 for the kernel to apply the umask to, so the final file gets the
    permissions a plain open() would give it, without reading (and so flipping) the process umask.
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` via a temporary file in the same folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def repair_tail(path: str | Path) -> int:
    """Cut a torn last line (left by a kill mid-write) off `path`; return the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # Walk back to the last newline; everything after it is an incomplete record.
        pos = size - 1
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            handle.seek(start)
            block = handle.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
        return size - keep


def append_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Append records as complete JSON lines in one durable write; return how many were written."""
    lines = []
    for record in records:
        if isinstance(record, BaseModel):
            record = record.model_dump(mode="json")
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def iter_jsonl(path: str | Path, *, skip_torn_tail: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield `(line_number, object)` for each non-blank line; bad JSON is an `InputFileError`.

    With `skip_torn_tail`, a last line without a trailing newline that fails to parse is taken as
    a write cut short by a crash and skipped (our own append-only files); otherwise it is an error.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a JSONL file")
    data = path.read_bytes()
    torn = bool(data) and not data.endswith(b"\n")
    lines = data.split(b"\n")
    problems: list[str] = []
    for index, raw in enumerate(lines):
        lineno = index + 1
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"line {lineno}: not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            if skip_torn_tail and torn and index == len(lines) - 1:
                return
            problems.append(f"line {lineno}: bad JSON: {exc.msg} (column {exc.colno})")
            continue
        if problems:
            continue
        yield lineno, obj
    if problems:
        _refuse_json_array(path, data)
        raise InputFileError(str(path), problems)


def _refuse_json_array(path: Path, data: bytes) -> None:
    """One clear line for a whole-file JSON array (an Alpaca-style .json) given where JSONL is read,
    instead of a "bad JSON" line for each of its lines."""
    if not data.lstrip().startswith(b"["):
        return
    try:
        whole = json.loads(data)
    except ValueError:
        return
    if isinstance(whole, list):
        raise UserError(
            f"{path}: this is a JSON array ({len(whole):,} items), not JSONL: the file must hold one "
            "JSON object a line (e.g. `jq -c '.[]' FILE > FILE.jsonl`)"
        )


def read_records(path: str | Path, what: str = "objects") -> tuple[list[tuple[int, Any]], str]:
    """Numbered rows of a JSON list (`.json`, numbered as items) or a JSONL file (numbered as lines).

    Returns the rows and the word ("item" or "line") that error messages use for their numbers.
    """
    path = Path(path)
    if path.suffix != ".json":
        return list(iter_jsonl(path)), "line"
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}, line {exc.lineno}: bad JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of {what}")
    return list(enumerate(data, start=1)), "item"


def describe_validation_error(lineno: int | None, exc: ValidationError) -> list[str]:
    """One message per failing field: `line N, field "a.0.b": what is wrong` (no line for a whole file)."""
    out = []
    where = f"line {lineno}, " if lineno is not None else ""
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ())) or "(record)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            msg = "missing field"
        out.append(f'{where}field "{loc}": {msg}')
    return out


def load_json_model(path: str | Path, model: type[M]) -> M:
    """One JSON object file (state.json, summary.json) validated against `model`.

    Every problem is an `InputFileError` naming the file and the field, so an old or hand-edited
    file says what is wrong with it instead of failing somewhere downstream.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputFileError(str(path), [f"not UTF-8 ({exc.reason} at byte {exc.start})"]) from None
    except json.JSONDecodeError as exc:
        raise InputFileError(
            str(path), [f"line {exc.lineno}: bad JSON: {exc.msg} (column {exc.colno})"]
        ) from None
    if not isinstance(data, dict):
        raise InputFileError(str(path), [f"line 1: expected a JSON object, got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputFileError(str(path), describe_validation_error(None, exc)) from None


def load_models(
    path: str | Path,
    model: type[M],
    check: Callable[[int, M], list[str]] | None = None,
    *,
    skip_torn_tail: bool = False,
) -> list[M]:
    """Every line of a JSONL file validated against `model`, all problems reported at once.

    The one way a JSONL file becomes models. `check(line_number, record)` adds problems that a single
    record's schema cannot see (duplicates across lines, say); they are reported together with the
    schema errors. `skip_torn_tail` is for our own append-only files, whose last line a kill may have
    cut short.
    """
    problems: list[str] = []
    out: list[M] = []
    for lineno, obj in iter_jsonl(path, skip_torn_tail=skip_torn_tail):
        if not isinstance(obj, dict):
            problems.append(f"line {lineno}: expected a JSON object, got {type(obj).__name__}")
            continue
        try:
            record = model.model_validate(obj)
        except ValidationError as exc:
            problems.extend(describe_validation_error(lineno, exc))
            continue
        if check is not None:
            problems.extend(check(lineno, record))
        out.append(record)
    if problems:
        raise InputFileError(str(path), problems)
    return out
