"""The review figures as rich tables for the terminal (the command prints these; --json prints the mapping)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.review.stats import KEYS, LABELS


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def interval(ci: list[float] | None) -> str:
    return "" if not ci else f"[{ci[0]:.0%}, {ci[1]:.0%}]"


def kappa(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The paper's table, reviewer agreement, judges against people, and every pairwise result."""
    table = summary["table"]
    who = ", ".join(summary["reviewers"]) or "nobody yet"
    grid = Table(title=f"People's review: {table['tasks']} tasks (reviewers: {who}; one instance a task)")
    grid.add_column("question")
    grid.add_column("people", justify="right")
    grid.add_column("95% interval", justify="right")
    grid.add_column("Self-Instruct paper", justify="right")
    for row in table["rows"]:
        share = "-" if row["share"] is None else f"{row['share']:.0%} ({row['yes']}/{row['n']})"
        grid.add_row(row["label"], share, interval(row["ci95"]), f"{row['paper']:.0%}")
    console.print(grid)
    for pair in summary["reviewer_agreement"]:
        parts = ", ".join(
            f"{LABELS[k]} {kappa(pair['questions'][k]['kappa'])} ({pct(pair['questions'][k]['agreement'])} same)"
            for k in KEYS
        )
        console.print(
            f"agreement {pair['reviewers'][0]} vs {pair['reviewers'][1]} on {pair['tasks']} tasks: kappa {parts}"
        )
    for judge in summary["judges"]:
        print_judge(judge, console)
    for entry in summary["pairwise"]:
        print_pairwise(entry, console)


def print_judge(judge: dict[str, Any], console: Console) -> None:
    name = (
        f"{judge['judge']['backend']}: {judge['judge']['model']} (prompt {judge['judge']['prompt_version']})"
    )
    grid = Table(title=f"Judge {name} against people, {judge['tasks']} tasks")
    grid.add_column("question")
    grid.add_column("accuracy", justify="right")
    grid.add_column("Cohen's kappa", justify="right")
    for key in KEYS:
        q = judge["questions"][key]
        grid.add_row(LABELS[key], pct(q["accuracy"]), kappa(q["kappa"]))
    console.print(grid)
    th = judge["thresholds"]
    rows = Table(
        title=f"--min-score against people's all-valid ({th['all_valid']} of {th['tasks']} tasks valid)"
    )
    for col in ("--min-score", "kept", "precision", "recall"):
        rows.add_column(col, justify="right")
    for row in th["rows"]:
        rows.add_row(
            str(row["min_score"]),
            f"{pct(row['kept_share'])} ({row['kept']})",
            pct(row["precision"]),
            pct(row["recall"]),
        )
    console.print(rows)
    target = f"{th['target_precision']:.0%}"
    if th["chosen"] is None:
        console.print(f"no --min-score reaches a precision of {target} against the people's labels")
    else:
        console.print(f"the smallest --min-score with a precision of at least {target}: {th['chosen']}")
    if judge.get("caution"):
        console.print(f"[yellow]caution:[/yellow] {judge['caution']}")


def print_pairwise(entry: dict[str, Any], console: Console) -> None:
    """People's blind verdicts on base vs student, with the judge's beside them when it also compared."""
    human, judge = entry["human"], entry.get("judge")
    grid = Table(title=f"Blind comparison, student vs base ({entry['eval_path']})")
    grid.add_column("")
    grid.add_column("people", justify="right")
    if judge:
        grid.add_column(f"judge ({judge['model']})", justify="right")

    def row(label: str, ours: str, theirs: str = "") -> None:
        grid.add_row(label, ours, *([theirs] if judge else []))

    rate = "-" if human["win_rate"] is None else f"{human['win_rate']:.1%} {interval(human['ci95'])}"
    judged = (
        "" if not judge or judge["win_rate"] is None else f"{judge['win_rate']:.1%} {interval(judge['ci95'])}"
    )
    row("student win rate (ties half), 95% interval", rate, judged)
    row(
        "student win / tie / loss",
        f"{human['win']} / {human['tie']} / {human['loss']}",
        f"{judge['win']} / {judge['tie']} / {judge['loss']}" if judge else "",
    )
    row("tasks compared", str(human["tasks"]), str(judge["judged"]) if judge else "")
    for side in ("base", "student"):
        counts = human["ratings"][side]
        row(f"{side} ratings A / B / C / D", " / ".join(str(counts[r]) for r in "ABCD"))
    console.print(grid)
    agreement = entry.get("judge_agreement")
    if agreement:
        console.print(
            f"judge and people agree on {pct(agreement['agreement'])} of {agreement['tasks']} tasks "
            f"(win/tie/loss; Cohen's kappa {kappa(agreement['kappa'])})"
        )
    if judge and judge.get("caution"):
        console.print(f"[yellow]caution:[/yellow] {judge['caution']}")
