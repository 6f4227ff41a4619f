"""The people's review in the report and the dataset card, shown above any judge's figures.

The figures come from `pipeline.review.summary.review_summary` (the one place that reads reviews.jsonl);
here they only become an HTML section and a Markdown section.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any


def human_figures(run_dir: str | Path) -> dict[str, Any] | None:
    """The review summary of a run that people reviewed; None when nobody has (no reviews.jsonl)."""
    from pipeline.review.summary import review_summary
    from pipeline.run.layout import RunLayout

    if not RunLayout(run_dir).reviews_path.is_file():
        return None
    summary = review_summary(run_dir)
    return summary if summary["labels"] or summary["pairwise"] else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f"{ci[0]:.0%}–{ci[1]:.0%}"


def _rows(human: dict[str, Any]) -> list[list[str]]:
    return [
        [r["label"], f"{_pct(r['share'])} ({r['yes']}/{r['n']})", _ci(r["ci95"]), f"{r['paper']:.0%}"]
        for r in human["table"]["rows"]
    ]


def _judge_lines(human: dict[str, Any]) -> list[str]:
    lines = []
    for judge in human["judges"]:
        q = judge["questions"]["all_valid"]
        kappa = "–" if q["kappa"] is None else f"{q['kappa']:+.2f}"
        chosen = judge["thresholds"]["chosen"]
        target = f"{judge['thresholds']['target_precision']:.0%}"
        pick = (
            f"--min-score {chosen} reaches {target} precision"
            if chosen
            else f"no --min-score reaches {target} precision"
        )
        lines.append(
            f"Judge {judge['judge']['model']} against people on {judge['tasks']} tasks: all-valid accuracy "
            f"{_pct(q['accuracy'])}, Cohen's kappa {kappa}; {pick}."
        )
    return lines


def _pair_lines(human: dict[str, Any]) -> list[str]:
    lines = []
    for entry in human["pairwise"]:
        h = entry["human"]
        rate = "–" if h["win_rate"] is None else f"{h['win_rate']:.0%} ({_ci(h['ci95'])})"
        lines.append(
            f"Blind comparison ({entry['eval_path']}): the student won {h['win']}, tied {h['tie']} and lost "
            f"{h['loss']} of {h['tasks']} tasks against its base model; win rate {rate}, ties counted half."
        )
    return lines


def human_html(human: dict[str, Any] | None) -> str:
    if not human:
        return (
            '<p class="empty">Nobody has reviewed this run: `selfinstruct review RUN` shows a sample in a local '
            "page (the Self-Instruct paper's three questions, one instance a task).</p>"
        )
    who = ", ".join(human["reviewers"]) or "–"
    head = "".join(
        f"<th>{escape(h)}</th>" for h in ("question", "people", "95% interval", "Self-Instruct paper")
    )
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in _rows(human))
    notes = "".join(
        f'<div class="note">{escape(line)}</div>' for line in _judge_lines(human) + _pair_lines(human)
    )
    return (
        f'<p class="lead">People reviewed {human["table"]["tasks"]} kept tasks ({escape(who)}), one random '
        "instance each, on the Self-Instruct paper's three questions; the paper's figures are its authors' "
        "review of 200 GPT-3 tasks.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"
    )


def human_card(human: dict[str, Any] | None) -> str:
    """The card's "People's review" section; "" when nobody reviewed the run."""
    if not human or not human["table"]["tasks"]:
        return ""
    lines = ["| question | people | 95% interval | Self-Instruct paper |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(human)]
    extra = "".join(f"\n{line}\n" for line in _judge_lines(human) + _pair_lines(human))
    return (
        f"### People's review\n\n{human['table']['tasks']} kept tasks were reviewed by people "
        f"({', '.join(human['reviewers'])}), one random instance each, on the Self-Instruct paper's three "
        "questions (`selfinstruct review`; labels in the run's `reviews.jsonl`).\n\n"
        + "\n".join(lines)
        + "\n"
        + extra
    )
