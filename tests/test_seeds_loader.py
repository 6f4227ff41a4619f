"""Loading seed files: the valid path, every kind of invalid input, and the paper's own file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.errors import InputFileError
from pipeline.run.seeds import load_seeds

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PAPER_SEEDS = SHARED / "reference" / "self_instruct_seed_tasks.jsonl"


def task(n: int, **changes) -> dict:
    record = {
        "id": f"seed_task_{n}",
        "name": f"task_{n}",
        "instruction": f"Name a colour that rhymes with word number {n}.",
        "instances": [{"input": "", "output": "Red."}],
        "is_classification": False,
    }
    record.update(changes)
    return record


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InputFileError) as info:
        load_seeds(path)
    return info.value.problems


def test_valid_file_loads_in_order(tmp_path):
    seeds = load_seeds(write_lines(tmp_path / "s.jsonl", [task(0), task(1, is_classification=True)]))
    assert [s.id for s in seeds] == ["seed_task_0", "seed_task_1"]
    assert seeds[1].is_classification is True
    assert seeds[0].instances[0].input == ""


def test_bad_json_names_the_line(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [task(0), '{"id": "seed_task_1", "name": ', task(2)])
    assert problems_of(path) == ["line 2: bad JSON: Expecting value (column 31)"]


def test_missing_field_names_line_and_field(tmp_path):
    broken = task(1)
    del broken["instruction"]
    path = write_lines(tmp_path / "s.jsonl", [task(0), broken])
    assert problems_of(path) == ['line 2, field "instruction": missing field']


def test_wrong_type_names_nested_field(tmp_path):
    path = write_lines(
        tmp_path / "s.jsonl",
        [task(0, instances=[{"input": "", "output": 5}]), task(1, is_classification="maybe")],
    )
    found = problems_of(path)
    assert any(p.startswith('line 1, field "instances.0.output"') for p in found)
    assert any(p.startswith('line 2, field "is_classification"') for p in found)


def test_empty_instruction_and_empty_output(tmp_path):
    path = write_lines(
        tmp_path / "s.jsonl",
        [task(0, instruction="   "), task(1, instances=[{"input": "x", "output": " "}])],
    )
    found = problems_of(path)
    assert any('line 1, field "instruction"' in p and "empty" in p for p in found)
    assert 'line 2, field "instances.0.output": output is empty' in found


def test_duplicate_id_is_an_error(tmp_path):
    path = write_lines(tmp_path / "s.jsonl", [task(0), task(1, id="seed_task_0")])
    assert problems_of(path) == ["line 2, field \"id\": duplicate id 'seed_task_0' (first on line 1)"]


def test_duplicate_name_is_a_warning(tmp_path):
    """Names are labels; the paper's own file repeats one, so this must not stop a run."""
    warnings: list[str] = []
    seeds = load_seeds(write_lines(tmp_path / "s.jsonl", [task(0), task(1, name="task_0")]), warnings)
    assert len(seeds) == 2
    assert warnings == ["line 2, field \"name\": duplicate name 'task_0' (first on line 1)"]


def test_not_an_object_and_empty_file(tmp_path):
    assert problems_of(write_lines(tmp_path / "a.jsonl", ["[1, 2]"])) == [
        "line 1: expected a JSON object, got list"
    ]
    empty = tmp_path / "b.jsonl"
    empty.write_text("\n")
    assert problems_of(empty) == ["line 1: the file holds no seed tasks"]


def test_the_papers_original_file_loads_unchanged():
    seeds = load_seeds(PAPER_SEEDS)
    assert len(seeds) == 175
    assert sum(s.is_classification for s in seeds) > 0


def test_cli_validate_reports_figures_for_the_paper_file():
    result = CliRunner().invoke(main, ["seeds", "validate", "--seeds", str(PAPER_SEEDS), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["count"] == 175
    assert 0 < figures["max_pairwise_rougeL"] <= 1
    assert figures["warnings"] == [
        "line 161, field \"name\": duplicate name 'fact_verification' (first on line 93)"
    ]


def test_cli_bad_file_exits_2_without_traceback(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [task(0), '{"nope"'])
    result = CliRunner().invoke(main, ["seeds", "validate", "--seeds", str(path)])
    assert result.exit_code == 2
    assert f"{path}: 1 problem(s)" in result.output
    assert "line 2: bad JSON" in result.output
    assert "Traceback" not in result.output


def test_cli_missing_file_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["seeds", "validate", "--seeds", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in result.output
