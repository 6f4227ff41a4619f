"""One reader for a run directory, used by every stage that reads a run (report, export, tuning, judge).

`Run.open(path)` checks that the path is a run; then each file is read, validated, and turned into
the run's contract: the config, the commit point (state.json), the kept and rejected records of the
committed rounds only, the typed summary, and the seeds the run used. Every problem is a `UserError`
naming the file (and line and field where there is one). The writer, `RunDir`, extends this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import UserError
from pipeline.core.jsonio import load_json_model, load_models
from pipeline.run.layout import STATE_FILE, TASKS_FILE, RunLayout
from pipeline.run.schemas import MachineTask, Rejection, SeedTask
from pipeline.run.seeds import load_seeds, resolve_seeds_path
from pipeline.run.state import STATE_VERSION, RunState
from pipeline.run.summary import RunSummary


@dataclass(frozen=True)
class Committed:
    """The records of the committed rounds, and how many records of a later round were left out."""

    rounds_done: int
    tasks: list[MachineTask]
    rejections: list[Rejection]
    left_out: int


class Run(RunLayout):
    """Reads a run directory. Nothing is cached: a writer (`RunDir`) changes the files as it goes."""

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """A run that exists: a folder holding a commit point or records, with a readable state.json."""
        run = cls(path)
        if not run.path.exists():
            raise UserError(f"{run.path}: no such run directory")
        if not run.path.is_dir():
            raise UserError(
                f"{run.path}: not a run directory (it is a file); expected a folder made by `selfinstruct generate`"
            )
        if not run.looks_like_run():
            raise UserError(
                f"{run.path}: not a run directory (no {TASKS_FILE} or {STATE_FILE}); "
                "run `selfinstruct generate --run-dir` first"
            )
        run.read_state()
        return run

    # -- the files -----------------------------------------------------------------------------------
    def read_state(self) -> RunState | None:
        """The commit point, or None before the first round is committed."""
        if not self.state_path.exists():
            return None
        state = load_json_model(self.state_path, RunState)
        if state.version != STATE_VERSION:
            raise UserError(
                f"{self.state_path}: state version {state.version}, this selfinstruct reads {STATE_VERSION}"
            )
        return state

    def config_text(self) -> str:
        """config.yaml as written (empty when missing)."""
        return self.config_path.read_text(encoding="utf-8") if self.config_path.is_file() else ""

    def read_config(self) -> dict[str, Any] | None:
        """The stored resolved configuration as a mapping, or None when config.yaml is missing."""
        if not self.config_path.is_file():
            return None
        try:
            data = yaml.safe_load(self.config_text())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"{self.config_path}{where}: bad YAML: {exc.problem or exc}") from None
        except yaml.YAMLError as exc:
            raise UserError(f"{self.config_path}: bad YAML: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise UserError(f"{self.config_path}, line 1: expected a mapping of settings")
        return data or {}

    def summary(self) -> RunSummary:
        """summary.json, validated; a run without one has not committed a round yet."""
        if not self.summary_path.is_file():
            raise UserError(
                f"{self.path}: not a run directory with results: missing {self.summary_path.name} "
                "(run `selfinstruct generate --run-dir` first)"
            )
        return load_json_model(self.summary_path, RunSummary)

    def read_tasks(self) -> list[MachineTask]:
        """Every kept task on disk, an uncommitted round's included (a torn last line is skipped)."""
        if not self.tasks_path.exists():
            return []
        return load_models(self.tasks_path, MachineTask, skip_torn_tail=True)

    def read_rejections(self) -> list[Rejection]:
        """Every rejection on disk, an uncommitted round's included (a torn last line is skipped)."""
        if not self.rejected_path.exists():
            return []
        return load_models(self.rejected_path, Rejection, skip_torn_tail=True)

    # -- the committed view --------------------------------------------------------------------------
    def committed(self) -> Committed:
        """The kept and rejected records of the rounds recorded in state.json, and nothing else.

        A round appended but not committed (the run was killed during it) is left out until the
        generator redoes it. A missing machine_tasks.jsonl is fine only while no task was kept.
        """
        state = self.read_state()
        done = state.rounds_done if state is not None else 0
        if not self.tasks_path.is_file() and state is not None and state.kept_total:
            raise UserError(
                f"{self.path}: missing {TASKS_FILE} although {STATE_FILE} counts {state.kept_total} kept "
                "tasks (run `selfinstruct generate --run-dir` first)"
            )
        tasks, rejections = self.read_tasks(), self.read_rejections()
        kept = [t for t in tasks if t.round <= done]
        rejected = [r for r in rejections if r.round <= done]
        left_out = len(tasks) - len(kept) + len(rejections) - len(rejected)
        return Committed(done, kept, rejected, left_out)

    def committed_tasks(self) -> list[MachineTask]:
        """The kept tasks of committed rounds (what export and training use)."""
        return self.committed().tasks

    # -- seeds ---------------------------------------------------------------------------------------
    def seeds_path(self, override: str | Path | None = None) -> Path:
        """The seeds file of the run: `override`, else config.yaml's `seeds` (null: the project's)."""
        if override is not None:
            return resolve_seeds_path(override)
        config = self.read_config() or {}
        if "seeds" in config:
            configured = config["seeds"]
            if configured is not None and not isinstance(configured, str):
                raise UserError(f'{self.config_path}, field "seeds": expected a path or null')
        elif self.summary_path.is_file():
            configured = self.summary().seeds.path
        else:
            configured = None
        return resolve_seeds_path(configured, self.path)

    def seeds(self, override: str | Path | None = None, *, flag: str = "") -> tuple[Path, list[SeedTask]]:
        """The seed tasks the run was made from; `flag` names the option that can point elsewhere."""
        path = self.seeds_path(override)
        if not path.is_file():
            hint = f"; pass it with {flag} PATH" if flag else ""
            raise UserError(f"{path}: seeds file of run {self.path} not found{hint}")
        return path, load_seeds(path)
