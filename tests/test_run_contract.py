"""The run directory's contract: one writer (`RunDir` + `RunSummary`), one reader (`Run`) for every stage.

Runs here are written through the writer in the generator's commit order (append the round's records,
replace state.json, rebuild summary.json from the committed state); nothing is hand-built except the
broken and old-format files whose reading is under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.errors import InputFileError, UserError
from pipeline.core.jsonio import append_jsonl, write_json_atomic
from pipeline.core.yamlconfig import dump_config
from pipeline.generate.config import GenerateConfig
from pipeline.generate.protocol import prepare_run
from pipeline.run.export import export_run, load_examples
from pipeline.run.reader import Run
from pipeline.run.rundir import RunDir, RunState
from pipeline.run.schemas import Instance, MachineTask, Rejection, TeacherIdentity
from pipeline.run.seeds import default_seeds_path, load_seeds, resolve_seeds_path
from pipeline.run.summary import RoundRow, RunSummary
from tuning.data import load_splits

TEACHER = TeacherIdentity(backend="openai", model="fake-teacher", fingerprint="abc123")


def round_row(round_no: int, kept: int, **changes) -> dict:
    """A round's row as the generator puts it in state.json (usage figures, then the round's counts)."""
    row = {
        "round": round_no,
        "requests": 10 * round_no,
        "cache_hits": round_no - 1,
        "prompt_tokens": 1000 * round_no,
        "completion_tokens": 400 * round_no,
        "cost": 0.0125 * round_no,
        "seconds": 2.5 * round_no,
        "tokens_per_s": 160.0,
        "retries": 1,
        "candidates": kept + 3,
        "kept": kept,
        "rejected": {"too_short": 2, "rouge_l_duplicate": 1 + round_no},
        "rejected_by_stage": {"instruction": 2, "dedup": 1, "parse": round_no},
        "classification": {"no": 3, "yes": round_no},
        "wall_s": 3.25 * round_no,
        "startup_s": 0.0,
    }
    row.update(changes)
    return row


def task(round_no: int, k: int) -> MachineTask:
    return MachineTask(
        id=f"r{round_no:04d}-{k:04d}",
        instruction=f"Describe landmark {round_no}.{k} to a visitor.",
        instances=[Instance(output=f"answer {round_no}.{k}")],
        is_classification=False,
        round=round_no,
        method="self-instruct",
        teacher=TEACHER,
    )


def commit_round(run: RunDir, state: RunState, round_no: int, kept: int, seeds: Path) -> None:
    """One round through the writer: append its records, replace state.json, then summary.json."""
    append_jsonl(run.tasks_path, [task(round_no, k) for k in range(kept)])
    append_jsonl(
        run.rejected_path,
        [Rejection(round=round_no, stage="instruction", reasons=["too_short"], instruction="Go.")],
    )
    state.rounds.append(round_row(round_no, kept))
    state.rounds_done = round_no
    state.kept_total += kept
    run.write_state(state)
    run.write_summary(
        RunSummary.from_state(
            state, method="self-instruct", seeds_path=str(seeds), seeds_count=8, teacher=TEACHER
        )
    )


@pytest.fixture
def seeds_file(tmp_path: Path) -> Path:
    path = tmp_path / "seeds.jsonl"
    append_jsonl(path, load_seeds(default_seeds_path())[:8])
    return path


@pytest.fixture
def run_dir(tmp_path: Path, seeds_file: Path) -> Path:
    """Two committed rounds (3 + 2 kept tasks)."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(dump_config(GenerateConfig(seeds=str(seeds_file))))
    state = RunState(teacher=TEACHER)
    commit_round(run, state, 1, 3, seeds_file)
    commit_round(run, state, 2, 2, seeds_file)
    return run.path


# -- RunSummary: writer -> file -> reader ------------------------------------------------------------
def test_summary_round_trips_through_writer_and_reader(run_dir, seeds_file):
    summary = Run.open(run_dir).summary()
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert summary.model_dump(mode="json") == on_disk
    rows = [round_row(1, 3), round_row(2, 2)]
    assert [r.model_dump(mode="json") for r in summary.rounds] == rows
    totals = summary.totals
    assert (totals.requests, totals.cache_hits, totals.prompt_tokens, totals.completion_tokens) == (
        30,
        1,
        3000,
        1200,
    )
    assert totals.cost == pytest.approx(0.0375) and totals.seconds == 7.5 and totals.retries == 2
    assert totals.tokens_per_s == round(1200 / 7.5, 1)
    assert (totals.candidates, totals.kept) == (11, 5)
    assert totals.rejected_by_reason == {"rouge_l_duplicate": 5, "too_short": 4}
    assert list(totals.rejected_by_reason) == ["rouge_l_duplicate", "too_short"]  # largest first
    assert totals.rejected_by_stage == {"instruction": 4, "parse": 3, "dedup": 2}
    assert totals.classification == {"no": 6, "yes": 3}
    assert summary.kept_total == 5 and summary.method == "self-instruct" and summary.teacher == TEACHER
    assert (summary.seeds.path, summary.seeds.count) == (str(seeds_file), 8)
    # The keys on disk are the ones summary.json has always had (totals.retries is the one addition).
    assert set(on_disk) == {
        "method",
        "teacher",
        "seeds",
        "rounds",
        "totals",
        "kept_total",
        "updated_at",
        "constrained_decoding",
    }
    assert set(on_disk["rounds"][0]) == set(round_row(1, 1))
    assert set(on_disk["totals"]) == {
        "requests",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "seconds",
        "tokens_per_s",
        "retries",
        "candidates",
        "kept",
        "rejected_by_reason",
        "rejected_by_stage",
        "classification",
    }


def test_a_summary_written_before_the_typed_model_still_reads(tmp_path):
    """The untyped writer's output: an unknown teacher as {}, and no totals.retries."""
    run = RunDir(tmp_path / "old")
    run.path.mkdir()
    run.write_state(RunState(rounds_done=1, kept_total=0))
    row = round_row(1, 0)
    del row["startup_s"]  # written before the field existed
    totals = {k: v for k, v in row.items() if k not in ("round", "retries", "wall_s", "rejected")}
    totals["rejected_by_reason"] = row["rejected"]
    old = {
        "method": "alpaca",
        "teacher": {},
        "seeds": {"path": "seeds/seed_tasks.jsonl", "count": 175},
        "rounds": [row],
        "totals": totals,
        "kept_total": 0,
        "updated_at": 1_700_000_000.0,
    }
    write_json_atomic(run.summary_path, old)
    summary = Run.open(run.path).summary()
    assert summary.teacher is None and summary.totals.retries == 0
    assert summary.rounds[0].rejected == row["rejected"] and summary.totals.requests == row["requests"]


# -- errors name the file and the field ------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s["totals"].pop("requests"), 'field "totals.requests": missing field'),
        (lambda s: s["rounds"][1].update(kept="two"), 'field "rounds.1.kept"'),
        (lambda s: s.update(kept_total=-1), 'field "kept_total"'),
        (lambda s: s.update(judge={"score": 1}), 'field "judge"'),
    ],
)
def test_a_broken_summary_names_file_and_field(run_dir, change, field):
    summary = json.loads((run_dir / "summary.json").read_text())
    change(summary)
    write_json_atomic(run_dir / "summary.json", summary)
    with pytest.raises(InputFileError) as err:
        Run.open(run_dir).summary()
    assert err.value.path == str(run_dir / "summary.json")
    assert any(field in problem for problem in err.value.problems), err.value.problems
    result = CliRunner().invoke(main, ["report", str(run_dir), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "summary.json" in result.output and field in result.output


def test_summary_that_is_not_json_names_the_line(run_dir):
    (run_dir / "summary.json").write_text('{"method": "self-instruct",\n  oops}\n')
    with pytest.raises(InputFileError, match=r"summary.json: 1 problem.*\n  line 2: bad JSON"):
        Run.open(run_dir).summary()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"version": 1, "rounds_done": "three"}', 'field "rounds_done"'),
        ('{"version": 1, "rounds_done": 2, "teacher": {"backend": "vllm"}}', 'field "teacher.model"'),
        ("[1, 2]", "line 1: expected a JSON object"),
        ('{"version": 1, "rounds_done": 2', "line 1: bad JSON"),
    ],
)
def test_a_broken_state_names_file_and_field(run_dir, tmp_path, text, field):
    (run_dir / "state.json").write_text(text)
    with pytest.raises(InputFileError) as err:
        Run.open(run_dir)
    assert err.value.path == str(run_dir / "state.json")
    assert any(field in problem for problem in err.value.problems), err.value.problems
    for args in (
        ["export", str(run_dir), "--format", "jsonl", "-o", str(tmp_path / "x")],
        ["report", str(run_dir)],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "state.json" in result.output and field in result.output


def test_open_says_what_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        Run.open(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"not a run directory \(it is a file\)"):
        Run.open(tmp_path / "file")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="no machine_tasks.jsonl or state.json"):
        Run.open(tmp_path / "plain")


# -- only committed rounds count, for every reader ------------------------------------------------------
def test_an_uncommitted_round_is_invisible_to_every_reader(run_dir, tmp_path):
    """Round 3 appended (the generator was killed before replacing state.json): no stage sees it."""
    append_jsonl(run_dir / "machine_tasks.jsonl", [task(3, k) for k in range(4)])
    append_jsonl(
        run_dir / "rejected.jsonl", [Rejection(round=3, stage="dedup", reasons=["rouge_l_duplicate"])]
    )
    run = Run.open(run_dir)
    assert len(run.read_tasks()) == 9  # on disk: 3 + 2 committed, 4 not
    committed = run.committed()
    assert committed.rounds_done == 2 and committed.left_out == 5
    assert [t.id for t in committed.tasks] == [t.id for t in run.committed_tasks()]
    assert {t.round for t in committed.tasks} == {1, 2} and len(committed.tasks) == 5
    assert {r.round for r in committed.rejections} == {1, 2}
    assert export_run(run_dir, "jsonl", tmp_path / "out.jsonl")["tasks"] == 5
    assert len(load_examples(run_dir)) == 5
    train, test, _ = load_splits(run_dir, 0.2, 1)
    assert len(train) + len(test) == 5
    assert not any("3." in e["instruction"] for e in [*train, *test])
    from pipeline.report.figures import load_run

    report = load_run(run_dir)
    assert len(report.tasks) == 5 and any("5 record(s) of round 3" in n for n in report.notes)


def test_missing_tasks_file_of_a_run_that_kept_tasks(run_dir):
    (run_dir / "machine_tasks.jsonl").unlink()
    with pytest.raises(
        UserError, match="missing machine_tasks.jsonl although state.json counts 5 kept tasks"
    ):
        Run.open(run_dir).committed()


# -- one seeds-path rule, for the generator and the readers -----------------------------------------------
def test_the_generator_and_the_reader_resolve_the_same_seeds(tmp_path, seeds_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = GenerateConfig(seeds="seeds.jsonl")
    run = RunDir(tmp_path / "run")
    generator_path = prepare_run(config, run)[1]
    assert generator_path == Path("seeds.jsonl") == resolve_seeds_path(config.seeds)
    assert Run(run.path).seeds_path() == generator_path
    default = RunDir(tmp_path / "default")
    assert prepare_run(GenerateConfig(), default)[1] == default_seeds_path()
    assert Run(default.path).seeds_path() == default_seeds_path()


def test_seeds_path_rules(run_dir, seeds_file, tmp_path, monkeypatch):
    run = Run.open(run_dir)
    assert run.seeds_path() == seeds_file
    assert run.seeds_path(tmp_path / "other.jsonl") == tmp_path / "other.jsonl"
    path, seeds = run.seeds()
    assert path == seeds_file and len(seeds) == 8
    # A relative path not under the working directory is looked for in the run directory (moved together).
    (run_dir / "my_seeds.jsonl").write_bytes(seeds_file.read_bytes())
    config = (run_dir / "config.yaml").read_text().replace(f"seeds: {seeds_file}", "seeds: my_seeds.jsonl")
    (run_dir / "config.yaml").write_text(config)
    monkeypatch.chdir(tmp_path)
    assert run.seeds_path() == run_dir / "my_seeds.jsonl"
    (run_dir / "my_seeds.jsonl").unlink()
    with pytest.raises(UserError, match="seeds file of run .* not found; pass it with --seeds PATH"):
        run.seeds(flag="--seeds")
    # Without a `seeds` key in config.yaml, the path the generator recorded in summary.json.
    (run_dir / "config.yaml").write_text("method: self-instruct\n")
    assert run.seeds_path() == Path(str(seeds_file))
    (run_dir / "config.yaml").write_text("seeds: [1, 2]\n")
    with pytest.raises(UserError, match='config.yaml, field "seeds": expected a path or null'):
        run.seeds_path()


def test_round_rows_are_validated_when_the_summary_is_built():
    state = RunState(rounds=[round_row(1, 2), {**round_row(2, 1), "new_figure": 3}])
    with pytest.raises(ValueError, match="new_figure"):
        RunSummary.from_state(state, method="alpaca", seeds_path="s", seeds_count=1, teacher=None)
    assert RoundRow.model_validate(round_row(1, 2)).kept == 2


def test_settings_added_after_a_run_was_made_do_not_block_its_resume_at_their_defaults():
    """A run made before a section existed (say evol:) resumes when that section is at its default; set to
    anything else it is a difference. Templates the run never recorded are not compared."""
    from pipeline.run.rundir import config_differences, fingerprint_differences

    old = {"method": "self-instruct", "batch_size": 8}
    defaults = {"method": "self-instruct", "batch_size": 8, "evol": {"min_words": 5}}
    assert config_differences(old, {**old, "evol": {"min_words": 5}}, (), defaults) == []
    assert config_differences(old, {**old, "evol": {"min_words": 9}}, (), defaults) == [
        "evol.min_words: '<unset>' -> 9"
    ]
    assert config_differences(old, {**old, "batch_size": 4}, (), defaults) == ["batch_size: 8 -> 4"]
    recorded = {"templates": {"prompt": "a"}}
    assert fingerprint_differences(recorded, {"templates": {"prompt": "a", "evolve_deepen": "b"}}) == []
    assert fingerprint_differences(recorded, {"templates": {"prompt": "c"}}) == [
        "templates.prompt (file content changed)"
    ]


def test_a_sampled_mean_similarity_is_recorded_with_its_sample_and_older_records_keep_their_shape():
    exact = task(1, 0)
    assert "avg_similarity_se" not in exact.model_dump() and "avg_similarity_sample" not in exact.model_dump()
    sampled = exact.model_copy(
        update={"avg_similarity": 0.07, "avg_similarity_se": 0.001, "avg_similarity_sample": 2000}
    )
    line = sampled.model_dump_json()
    assert (
        json.loads(line)["avg_similarity_sample"] == 2000 and json.loads(line)["avg_similarity_se"] == 0.001
    )
    assert MachineTask.model_validate_json(line) == sampled
    older = json.loads(exact.model_dump_json())  # a record written before these fields existed
    assert MachineTask.model_validate(older).avg_similarity_sample is None
