"""What a reader of the report needs beside the run's figures: a caution when the teacher is the bundled
toy model, how long the run took (and how much of it was starting the engine), and the student that
`make train` trained on the run, when there is one.

The student's figures are read from the files `selfinstruct train` and `evaluate` write
(`train_summary.json`, `eval.json`) in a folder of the run directory (`make train`: RUN/student), as
JSON: the report reads what they wrote, without importing the tuning stage.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from pipeline.report.public import BUNDLED_HUB_ID, hub_model_id

STRONG_PRESETS = (
    "configs/gpu.yaml (a 7-8B instruct model on GPUs) or configs/server.yaml (any OpenAI-compatible server)"
)


def toy_teacher_caution(model: str) -> str | None:
    """The plain warning a run by the bundled 135M teacher needs at the top of its report; None otherwise."""
    if hub_model_id(model) != BUNDLED_HUB_ID:
        return None
    return (
        f"The teacher of this run is the bundled {BUNDLED_HUB_ID} (135M parameters), there so that the "
        "pipeline runs end to end on a CPU without downloads. A model this small writes instructions and "
        "answers that are often wrong, repetitive or off-task: this data shows the pipeline working, and is "
        f"not a dataset to train an assistant on. For real data, use a strong teacher: {STRONG_PRESETS}."
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _evaluation(folder: Path) -> dict[str, Any] | None:
    for path in sorted(folder.glob("eval.json")) + sorted(folder.glob("*/eval.json")):
        report = _read(path)
        if report and isinstance(report.get("models"), dict):
            keys = ("rouge_l", "clean_end", "heldout_loss")
            models = {
                name: {k: m.get(k) for k in keys}
                for name, m in report["models"].items()
                if isinstance(m, dict)
            }
            return {
                "file": path.relative_to(folder.parent).as_posix(),
                "n_tasks": report.get("n_tasks"),
                "models": models,
            }
    return None


def student_figures(run_dir: str | Path) -> list[dict[str, Any]]:
    """Each student trained into a folder of the run (one with train_summary.json), with its evaluation."""
    out = []
    for summary_path in sorted(Path(run_dir).glob("*/train_summary.json")):
        summary = _read(summary_path)
        if summary is None:
            continue
        out.append(
            {
                "folder": summary_path.parent.name,
                "base_model": hub_model_id(str(summary.get("base_model", "?"))),
                "steps": summary.get("steps"),
                "wall_time_s": summary.get("wall_time_s"),
                "eval_loss_before": summary.get("eval_loss_before"),
                "eval_loss_after": summary.get("eval_loss_after"),
                "evaluation": _evaluation(summary_path.parent),
            }
        )
    return out


def _n(value: Any, spec: str = ".4g") -> str:
    return format(value, spec) if isinstance(value, int | float) else "–"


def timing_html(timing: dict[str, Any]) -> str:
    if not timing.get("invocations"):
        return ""
    return (
        f'<p class="lead">Wall clock: {_n(timing["wall_s"], ",.0f")} s over {timing["invocations"]} invocation(s) of '
        f"<code>generate</code>, of which {_n(timing['startup_s'], ',.0f')} s went to starting the engine and "
        "preparing (seeds, ROUGE-L index) before each invocation's first round.</p>"
    )


def student_html(students: list[dict[str, Any]]) -> str:
    """The students' training and evaluation figures; a hint how to get them when there is none."""
    if not students:
        return '<h3>Student</h3><p class="empty">No student trained on this run yet (<code>make train</code>).</p>'
    parts = ["<h3>Student</h3>"]
    for s in students:
        parts.append(
            f'<p class="lead"><code>{escape(s["folder"])}</code>: LoRA on {escape(s["base_model"])}, {_n(s["steps"])} '
            f"steps in {_n(s['wall_time_s'], ',.0f')} s; held-out loss {_n(s['eval_loss_before'])} → "
            f"{_n(s['eval_loss_after'])}.</p>"
        )
        ev = s["evaluation"]
        if ev:
            rows = "".join(
                f"<tr><td>{escape(name)}</td><td class=n>{_n(m['rouge_l'])}</td><td class=n>{_n(m['clean_end'])}</td>"
                f"<td class=n>{_n(m['heldout_loss'])}</td></tr>"
                for name, m in ev["models"].items()
            )
            parts.append(
                f'<p class="lead">Evaluation on {_n(ev["n_tasks"])} held-out tasks (<code>{escape(ev["file"])}</code>):'
                "</p><table><thead><tr><th>model</th><th class=n>ROUGE-L</th><th class=n>clean end</th>"
                f"<th class=n>held-out loss</th></tr></thead><tbody>{rows}</tbody></table>"
            )
    return "".join(parts)
