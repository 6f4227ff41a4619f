"""What a run directory holds, for `selfinstruct status`: read through `Run` only, nothing written.

Rounds committed, kept and rejected records of those rounds, a round cut short (records on disk past
the commit point, which the next `generate` redoes), the teacher and judges, the outputs already made,
and whether a `generate` holds the run's lock right now.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.locks import lock_holder
from pipeline.run.judgments import read_judgments
from pipeline.run.reader import Run


def _identity(identity: Any) -> str | None:
    return f"{identity.backend}: {identity.model}" if identity is not None else None


def run_status(path: str) -> dict[str, Any]:
    """The figures `selfinstruct status` prints (and `--json` gives as they are)."""
    run = Run.open(path)
    state = run.read_state()
    committed = run.committed()
    config = run.read_config() or {}
    summary = run.summary() if run.summary_path.is_file() else None
    judgments = read_judgments(run.path)
    judges = sorted({_identity(j.judge) or "?" for j in judgments.values()})
    kept_ids = {t.id for t in committed.tasks}
    holder = lock_holder(run.lock_path)
    outputs = {
        name: str(run.path / name) for name in ("report.html", "README.md") if (run.path / name).is_file()
    }
    if run.export_dir.is_dir():
        outputs["export"] = str(run.export_dir)
    return {
        "run_dir": str(run.path),
        "method": config.get("method"),
        "rounds_committed": committed.rounds_done,
        "kept": len(committed.tasks),
        "rejected": len(committed.rejections),
        "candidates": summary.totals.candidates if summary is not None else None,
        "uncommitted_records": committed.left_out,
        "teacher": _identity(state.teacher if state is not None else None)
        or (
            f"{config['teacher'].get('backend')}: {config['teacher'].get('model')}"
            if config.get("teacher")
            else None
        ),
        "judged": sum(1 for task_id in judgments if task_id in kept_ids),
        "judges": judges,
        "in_progress": holder is not None,
        "pid": holder or None,
        "outputs": outputs,
    }
