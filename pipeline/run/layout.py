"""The files of a run directory: their names, defined once for the writer (`RunDir`) and the reader (`Run`).

config.yaml          the resolved configuration (a rerun must match it)
machine_tasks.jsonl  kept tasks, append-only, ids "r{round:04d}-{k:04d}"
rejected.jsonl       rejected candidates, append-only, each with a stable `candidate.key`
state.json           the commit point: rounds done, RNG state, per-round figures (atomic)
summary.json         counts, tokens, cost and time for people and the report (atomic)
judgments.jsonl      a judge's verdict per kept task, append-only (`selfinstruct judge`)
reviews.jsonl        people's labels of tasks and of blind answer pairs, append-only (`selfinstruct review`)
review_sample.json   the stored review sample of each seed, so a grown run keeps its reviewers' queues
cache/               the teacher cache (cache/judge/: the judge's)
export/              exports (`make generate` writes export/hf and export/alpaca_data.json)
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.yaml"
TASKS_FILE = "machine_tasks.jsonl"
REJECTED_FILE = "rejected.jsonl"
STATE_FILE = "state.json"
SUMMARY_FILE = "summary.json"
CACHE_DIR = "cache"
EXPORT_DIR = "export"
LOCK_FILE = ".lock"
JUDGMENTS_FILE = "judgments.jsonl"
REVIEWS_FILE = "reviews.jsonl"
REVIEW_SAMPLE_FILE = "review_sample.json"


class RunLayout:
    """Where each file of one run directory lives; nothing is read or written here."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def tasks_path(self) -> Path:
        return self.path / TASKS_FILE

    @property
    def rejected_path(self) -> Path:
        return self.path / REJECTED_FILE

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def cache_dir(self) -> Path:
        return self.path / CACHE_DIR

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def judgments_path(self) -> Path:
        return self.path / JUDGMENTS_FILE

    @property
    def reviews_path(self) -> Path:
        return self.path / REVIEWS_FILE

    @property
    def review_sample_path(self) -> Path:
        return self.path / REVIEW_SAMPLE_FILE

    def looks_like_run(self) -> bool:
        """A folder is a run once the generator has written records or a commit point into it."""
        return self.path.is_dir() and (self.tasks_path.is_file() or self.state_path.is_file())
