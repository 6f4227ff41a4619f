"""A newcomer's bad inputs (issue 20): each runs the real `selfinstruct` command in a process of its own and
gets exit code 2, one `error:` message and no traceback, and leaves every file as it was.

None of these may reach a model: each one fails before the engine or a server is asked anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_report import write_run

REPO = Path(__file__).resolve().parents[1]


def selfinstruct(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The console script as a user runs it (this checkout's code), with its real exit code and streams."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: what a failed command must leave exactly as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, the message starts with `error:` and holds every needle; returns it."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A finished run (`run/`), its seeds, a folder, a plain file and a small JSONL to dedup."""
    write_run(tmp_path / "run", tmp_path / "seeds.jsonl")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "in.jsonl").write_text('{"instruction": "a b c"}\n{"instruction": "a b c"}\n')
    return tmp_path


# -- 1. output locations, checked before the work --------------------------------------------------------
OUTPUT_CASES = {
    "export to /sys": (["export", "run", "--format", "jsonl", "-o", "/sys/x.jsonl"], ["-o /sys/x.jsonl"]),
    "export to /proc": (["export", "run", "--format", "alpaca", "-o", "/proc/x.json"], ["-o /proc/x.json"]),
    "export onto a folder": (["export", "run", "--format", "jsonl", "-o", "adir"], ["is a folder"]),
    "export under a file": (
        ["export", "run", "--format", "jsonl", "-o", "afile/x.jsonl"],
        ["afile is a file, not a folder"],
    ),
    "hf export to /sys": (["export", "run", "--format", "hf", "-o", "/sys/x"], ["-o /sys/x"]),
    "hf export over a folder of other files": (
        ["export", "run", "--format", "hf", "-o", "run"],
        ["not a saved dataset"],
    ),
    "report to /sys": (["report", "run", "--out", "/sys/rep", "--quiet"], ["--out /sys/rep"]),
    "report under a file": (["report", "run", "--out", "afile/rep", "--quiet"], ["is a file, not a folder"]),
    "dedup to /sys": (["dedup", "in.jsonl", "-o", "/sys/x.jsonl"], ["-o /sys/x.jsonl"]),
    "dedup rejected under a file": (
        ["dedup", "in.jsonl", "-o", "k.jsonl", "--rejected", "afile/r.jsonl"],
        ["--rejected afile/r.jsonl"],
    ),
    "generate in /sys": (["generate", "--run-dir", "/sys/run", "--quiet"], ["--run-dir /sys/run"]),
    "train to /sys": (["train", "--data", "run", "--out", "/sys/st", "--max-steps", "1"], ["--out /sys/st"]),
    "evaluate to /sys": (["evaluate", "--out", "/sys/ev", "--limit", "1"], ["--out /sys/ev"]),
    "serve log under a file": (["serve", "--log", "afile/x.log"], ["--log afile/x.log"]),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_an_output_that_cannot_be_written_is_refused_before_the_work(work: Path, case: str):
    args, needles = OUTPUT_CASES[case]
    before = tree(work)
    assert_refused(selfinstruct(*args, cwd=work), *needles)
    assert tree(work) == before


def test_with_json_an_error_is_also_a_json_object_on_stdout(work: Path):
    before = tree(work)
    result = selfinstruct("export", "run", "--format", "jsonl", "-o", "/sys/x.jsonl", "--json", cwd=work)
    message = assert_refused(result, "/sys/x.jsonl")
    assert json.loads(result.stdout) == {"error": message.removeprefix("error: "), "code": 2}
    assert tree(work) == before


def test_with_json_a_usage_error_is_a_json_object_too(work: Path):
    result = selfinstruct("export", "run", "--format", "nope", "-o", "x.jsonl", "--json", cwd=work)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    payload = json.loads(result.stdout)
    assert payload["code"] == 2 and "'nope' is not one of" in payload["error"]


# -- 1, 2. config files and flags --------------------------------------------------------------------------
CONFIG_CASES = {
    "non-UTF-8 byte": (b"method: self-instruct\n# caf\xe9\nbatch_size: 2\n", [], ["line 2: not UTF-8"]),
    "a key twice": (
        b"teacher:\n  model: bundled\nbatch_size: 2\nteacher:\n  backend: vllm\n",
        [],
        ['line 4, field "teacher": given twice (first on line 1)'],
    ),
    "a nested key twice": (
        b"teacher:\n  model: bundled\n  model: other\n",
        [],
        ['line 3, field "teacher.model": given twice (first on line 2)'],
    ),
    "empty file": (b"", [], ["line 1: the config file holds no settings"]),
    "comments only": (b"# nothing here\n", [], ["holds no settings"]),
    "a bool for a number": (
        b"method: self-instruct\nbatch_size: true\n",
        [],
        ['line 2, field "batch_size": expected a number, got true'],
    ),
    "a nested bool for a number": (
        b"dedup:\n  threshold: false\n",
        [],
        ['line 2, field "dedup.threshold": expected a number, got false'],
    ),
    "a bad flag beside a good file": (
        b"method: self-instruct\nbatch_size: 2\n",
        ["--time-budget", "9x"],
        ['error: command line: 1 problem(s)\n  command line, field "time_budget"'],
    ),
    "--base-url with the in-process backend": (
        b"method: self-instruct\n",
        ["--base-url", "http://127.0.0.1:9/v1"],
        ['command line, field "teacher.base_urls"', "add --teacher openai"],
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_mistakes_stop_before_the_engine(tmp_path: Path, case: str):
    text, flags, needles = CONFIG_CASES[case]
    (tmp_path / "c.yaml").write_bytes(text)
    before = tree(tmp_path)
    result = selfinstruct(
        "generate", "--config", "c.yaml", "--run-dir", "r", *flags, cwd=tmp_path, timeout=60
    )
    assert_refused(result, *needles)
    assert tree(tmp_path) == before and not (tmp_path / "r").exists()


def test_base_url_without_openai_is_refused_in_a_yaml_file_too(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("teacher:\n  base_urls: [http://127.0.0.1:9/v1]\n")
    result = selfinstruct("generate", "--config", "c.yaml", "--run-dir", "r", cwd=tmp_path, timeout=60)
    assert_refused(result, 'line 2, field "teacher.base_urls"')


# -- 4. messages that say what is wrong -------------------------------------------------------------------
def one_seed_line(work: Path) -> str:
    return (work / "seeds.jsonl").read_text().splitlines()[0]


@pytest.mark.parametrize("command", ["validate", "generate"])
def test_seeds_validate_and_generate_share_one_rule_set(work: Path, command: str):
    """A file the validator passes is one a run takes: too few tasks and an instruction that cannot fit."""
    (work / "one.jsonl").write_text(one_seed_line(work) + "\n")
    big = json.loads(one_seed_line(work)) | {"id": "big", "name": "big", "instruction": "word " * 2_000_000}
    (work / "huge.jsonl").write_text((work / "seeds.jsonl").read_text() + json.dumps(big) + "\n")
    lines = len((work / "huge.jsonl").read_text().splitlines())
    before = tree(work)
    for name, needles in (
        ("one.jsonl", ["1 seed tasks, but every prompt shows 8"]),
        ("huge.jsonl", [f'line {lines}, field "instruction": 2,000,000 words cannot fit in a prompt']),
    ):
        args = ["seeds", "validate", name] if command == "validate" else ["generate", "--seeds", name]
        assert_refused(
            selfinstruct(*args, "--run-dir", "r", cwd=work)
            if command == "generate"
            else selfinstruct(*args, cwd=work),
            name,
            *needles,
        )
    assert tree(work) == before


@pytest.mark.parametrize(
    "args",
    [
        ["seeds", "validate", "alpaca.json"],
        ["generate", "--seeds", "alpaca.json", "--run-dir", "r"],
        ["dedup", "alpaca.json", "-o", "k.jsonl"],
    ],
    ids=["seeds validate", "generate", "dedup"],
)
def test_a_json_array_where_jsonl_is_read_gets_one_line(work: Path, args: list[str]):
    rows = [{"instruction": f"Do {k}", "input": "", "output": "ok"} for k in range(12)]
    (work / "alpaca.json").write_text(json.dumps(rows, indent=1))
    before = tree(work)
    message = assert_refused(
        selfinstruct(*args, cwd=work), "alpaca.json: this is a JSON array (12 items), not JSONL"
    )
    assert "bad JSON" not in message and len(message.splitlines()) == 1
    assert tree(work) == before


def test_dedup_refuses_to_overwrite_its_input(work: Path):
    before = tree(work)
    assert_refused(selfinstruct("dedup", "in.jsonl", "-o", "in.jsonl", cwd=work), "also the INPUT file")
    assert_refused(
        selfinstruct("dedup", "in.jsonl", "-o", "k.jsonl", "--rejected", "in.jsonl", cwd=work), "--rejected"
    )
    assert_refused(
        selfinstruct("dedup", "in.jsonl", "-o", "seeds.jsonl", "--against", "seeds.jsonl", cwd=work),
        "also the --against file",
    )
    assert tree(work) == before


def test_report_license_must_be_a_hub_identifier(work: Path):
    before = tree(work)
    message = assert_refused(selfinstruct("report", "run", "--license", "not a license!", cwd=work))
    assert "not a Hugging Face Hub license identifier" in message
    assert_refused(
        selfinstruct("report", "run", "--license", "apache2.0", cwd=work), "did you mean apache-2.0"
    )
    assert tree(work) == before
    ok = selfinstruct("report", "run", "--license", "CC-BY-4.0", "--quiet", cwd=work)
    assert ok.returncode == 0, ok.stderr
    assert "\nlicense: cc-by-4.0\n" in (work / "run" / "README.md").read_text()


def test_seeds_validate_errors_as_json_and_its_table_on_one_stream(work: Path):
    (work / "one.jsonl").write_text(one_seed_line(work) + "\n")
    result = selfinstruct("seeds", "validate", "one.jsonl", "--json", cwd=work)
    message = assert_refused(result)
    assert json.loads(result.stdout) == {"error": message.removeprefix("error: "), "code": 2}
    for args in (
        ["seeds", "validate"],
        ["seeds", "validate", "--seeds", str(REPO / "seeds" / "seed_tasks.jsonl")],
    ):
        good = selfinstruct(*args, cwd=work)
        assert good.returncode == 0 and good.stderr == ""
        assert "max pairwise ROUGE-L" in good.stdout and good.stdout.rstrip().endswith(
            "ok: 175 valid seed tasks"
        )
