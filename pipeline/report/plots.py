"""The report's charts, drawn with matplotlib off-screen and returned as PNG data URIs.

Embedding the PNGs keeps report.html one self-contained file that opens offline. Every chart has a
title, labelled axes and the counts written on its bars, so it reads without the tables beside it.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from typing import Any, TypeVar

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

BLUE = "#3b6ea8"
RED = "#c0504d"
GREEN = "#4f9a5b"
GREY = "#9aa3ad"
ORANGE = "#d9822b"
PALETTE = ["#3b6ea8", "#d9822b", "#4f9a5b", "#c0504d", "#7e5ea8", "#2a9d9d", "#b8860b", "#8c564b", "#e377c2"]
DPI = 110
STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",
}
"""The charts' look, applied only while a chart is drawn (`styled`): matplotlib's global state is not ours."""

P = TypeVar("P", bound=Callable[..., Any])


def styled(plot: P) -> P:
    """Draw and save under `STYLE` in a local rc context; the figures are plain `Figure` objects (no
    pyplot, so no global backend or figure registry is touched)."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_data_uri(fig: Figure) -> str:
    """PNG bytes of `fig` as a data: URI (Agg renders it: a bare `Figure` needs no backend)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.3g}"


def funnel_bars(funnel: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    """The funnel's candidate steps to draw, and the teacher requests apart: requests are not candidates,
    and on the same axis they would read as a step of the funnel."""
    requests = [s for s in funnel["steps"] if s["step"].startswith("teacher requests")]
    return [s for s in funnel["steps"] if s not in requests], (requests[0]["count"] if requests else None)


@styled
def plot_funnel(funnel: dict[str, Any]) -> str:
    steps, requests = funnel_bars(funnel)
    labels = [s["step"] for s in steps]
    values = [s.get("removed", s["count"]) for s in steps]
    colors = [RED if "removed" in s else (GREEN if s["step"] == "kept tasks" else BLUE) for s in steps]
    fig = Figure(figsize=(9, 0.5 * len(steps) + 1.2))
    ax = fig.subplots()
    bars = ax.barh(range(len(steps)), values, color=colors)
    ax.set_yticks(range(len(steps)), labels)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[_fmt(v) for v in values], padding=3)
    ax.set_xlabel("count (red: removed at that stage)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    asked = f" (from {_fmt(requests)} teacher requests of all kinds)" if requests is not None else ""
    ax.set_title(f"Funnel: candidate tasks to kept tasks{asked}")
    ax.set_xlim(0, max([*values, 1]) * 1.15)
    return to_data_uri(fig)


@styled
def plot_reasons(reasons: list[dict[str, Any]], top: int = 20) -> str | None:
    if not reasons:
        return None
    shown = reasons[:top]
    fig = Figure(figsize=(9, 0.38 * len(shown) + 1.3))
    ax = fig.subplots()
    bars = ax.barh(range(len(shown)), [r["count"] for r in shown], color=RED)
    ax.set_yticks(range(len(shown)), [r["reason"] for r in shown])
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[str(r["count"]) for r in shown], padding=3)
    ax.set_xlabel("rejected records carrying the reason")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Rejection reasons" + (f" (top {top})" if len(reasons) > top else ""))
    ax.set_xlim(0, max(r["count"] for r in shown) * 1.15)
    return to_data_uri(fig)


@styled
def plot_novelty(novelty: dict[str, Any]) -> str | None:
    bins = novelty["histogram"]
    if not novelty["scores"]["n"]:
        return None
    fig = Figure(figsize=(9, 3.8))
    ax = fig.subplots()
    width = bins[0]["hi"] - bins[0]["lo"]
    bars = ax.bar(
        [b["lo"] for b in bins], [b["count"] for b in bins], width=width * 0.92, align="edge", color=BLUE
    )
    ax.bar_label(bars, labels=[str(b["count"]) if b["count"] else "" for b in bins], padding=2, fontsize=8)
    mean = novelty["scores"]["mean"]
    ax.axvline(mean, color=ORANGE, linestyle="--", label=f"mean {mean:.2f}")
    ax.set_xlim(0, 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("ROUGE-L to the most similar seed instruction")
    ax.set_ylabel("kept instructions")
    ax.set_title(
        f"Novelty: overlap of {novelty['scores']['n']} kept instructions with {novelty['seeds']} seeds"
    )
    ax.legend(frameon=False)
    ax.margins(y=0.12)
    return to_data_uri(fig)


@styled
def plot_lengths(lengths: dict[str, Any]) -> str | None:
    parts = [(name, lengths[name]) for name in ("instruction", "input", "output")]
    if not any(p["n"] for _, p in parts):
        return None
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    titles = {"instruction": "Instructions", "input": "Non-empty inputs", "output": "Outputs"}
    for ax, (name, part), color in zip(axes, parts, (BLUE, ORANGE, GREEN), strict=True):
        ax.set_title(f"{titles[name]} (n={part['n']})")
        ax.set_xlabel("words")
        ax.set_ylabel("count")
        if not part["n"]:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color=GREY)
            continue
        bins = part["histogram"]
        width = bins[0]["hi"] - bins[0]["lo"]
        bars = ax.bar(
            [b["lo"] for b in bins], [b["count"] for b in bins], width=width * 0.9, align="edge", color=color
        )
        if len(bins) <= 15:
            ax.bar_label(
                bars, labels=[str(b["count"]) if b["count"] else "" for b in bins], fontsize=7, padding=1
            )
        ax.axvline(part["median"], color="black", linestyle=":", label=f"median {part['median']:g}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(frameon=False, fontsize=8)
        ax.margins(y=0.12)
    fig.suptitle("Length distributions (words)", fontweight="bold")
    fig.tight_layout()
    return to_data_uri(fig)


@styled
def plot_shares(shares: dict[str, Any]) -> str | None:
    n = shares["tasks"]
    if not n:
        return None
    fig = Figure(figsize=(11, 2.6))
    axes = fig.subplots(1, 2)
    panels = [
        (
            "Classification tasks",
            [("classification", shares["classification"]), ("open-ended", n - shares["classification"])],
        ),
        (
            "Tasks with an input",
            [("with input", shares["with_input"]), ("instruction only", n - shares["with_input"])],
        ),
    ]
    for ax, (title, bars) in zip(axes, panels, strict=True):
        counts = [count for _, count in bars]
        drawn = ax.barh(range(len(bars)), counts, color=[BLUE, GREY])
        ax.set_yticks(range(len(bars)), [name for name, _ in bars])
        ax.invert_yaxis()
        ax.bar_label(drawn, labels=[f"{c:,} ({c / n:.0%})" for c in counts], padding=3)
        ax.set_xlim(0, n * 1.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("kept tasks")
        ax.set_title(title)
    fig.suptitle(f"Task types among {n:,} kept tasks", fontweight="bold")
    fig.tight_layout()
    return to_data_uri(fig)


@styled
def plot_verbs(verbs: dict[str, Any], top: int = 20) -> str | None:
    """Top verbs as bars, each split into its most common direct objects (the paper's verb-noun view)."""
    rows = verbs["verbs"][:top]
    if not rows:
        return None
    fig = Figure(figsize=(10, 0.42 * len(rows) + 1.4))
    ax = fig.subplots()
    for y, row in enumerate(rows):
        left = 0
        for k, noun in enumerate(row["nouns"]):
            ax.barh(y, noun["count"], left=left, color=PALETTE[k % len(PALETTE)], edgecolor="white")
            if noun["count"] >= max(1, 0.06 * rows[0]["count"]):
                ax.text(
                    left + noun["count"] / 2,
                    y,
                    noun["noun"],
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                )
            left += noun["count"]
        rest = row["count"] - left
        if rest > 0:
            ax.barh(y, rest, left=left, color=GREY, edgecolor="white")
        ax.text(row["count"], y, f" {row['count']}", va="center", fontsize=9)
    ax.set_yticks(range(len(rows)), [r["verb"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, rows[0]["count"] * 1.12)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if verbs["method"] == "spacy":
        ax.set_xlabel("instructions (coloured: most common direct objects; grey: other or none)")
        ax.set_title(f"Top {len(rows)} root verbs and their direct objects")
    else:
        ax.set_xlabel("instructions")
        ax.set_title(f"Top {len(rows)} leading words (no parser: see the note)")
    return to_data_uri(fig)


@styled
def plot_rounds(rounds: dict[str, Any]) -> str | None:
    rows = rounds["rows"]
    if not rows:
        return None
    xs = [r["round"] for r in rows]
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 2)
    ax = axes[0]
    width = 0.4
    cand = ax.bar(
        [x - width / 2 for x in xs],
        [r["candidates"] or 0 for r in rows],
        width,
        color=BLUE,
        label="candidates",
    )
    kept = ax.bar(
        [x + width / 2 for x in xs], [r["kept"] or 0 for r in rows], width, color=GREEN, label="kept"
    )
    if len(rows) <= 12:
        ax.bar_label(cand, fontsize=8, padding=1)
        ax.bar_label(kept, fontsize=8, padding=1)
    ax.set_xlabel("round")
    ax.set_ylabel("instructions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Candidates and kept tasks per round")
    ax.set_xticks(xs)
    ax.legend(frameon=False)
    ax.margins(y=0.15)
    ax = axes[1]
    speed = ax.bar(xs, [r["tokens_per_s"] or 0 for r in rows], 0.6, color=ORANGE)
    if len(rows) <= 12:
        ax.bar_label(speed, labels=[_fmt(r["tokens_per_s"] or 0) for r in rows], fontsize=8, padding=1)
    ax.set_xlabel("round")
    ax.set_ylabel("completion tokens per second")
    ax.set_title("Teacher throughput per round")
    ax.set_xticks(xs)
    ax.margins(y=0.15)
    fig.tight_layout()
    return to_data_uri(fig)


@styled
def plot_judge(judge: dict[str, Any] | None) -> str | None:
    """The judge's scores: how many tasks got each score from 1 to 5."""
    if not judge or not judge["scored"]:
        return None
    rows = judge["histogram"]
    fig = Figure(figsize=(7, 2.8))
    ax = fig.subplots()
    colors = [RED, ORANGE, GREY, BLUE, GREEN]
    bars = ax.bar([str(r["score"]) for r in rows], [r["count"] for r in rows], color=colors)
    ax.bar_label(bars, labels=[f"{r['count']:,}" for r in rows], padding=2)
    ax.set_xlabel("judge's score (1 = unusable, 5 = excellent)")
    ax.set_ylabel("tasks")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.15)
    ax.set_title(f"Judge scores of {judge['scored']:,} tasks")
    fig.tight_layout()
    return to_data_uri(fig)


def _clip_label(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _cluster_colours(k: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(k)]


@styled
def plot_diversity_map(diversity: dict[str, Any] | None) -> str | None:
    """The kept tasks on a 2-D map (PCA of the embeddings), coloured by cluster and, where there are
    verdicts, by verdict; the seeds drawn over them as black crosses."""
    if not diversity:
        return None
    pts, seeds = diversity["points"], diversity["seed_points"]
    x, y = np.array(pts["x"]), np.array(pts["y"])
    labels = np.array(pts["cluster"])
    has_verdicts = any(v is not None for v in pts["verdict"])
    fig = Figure(figsize=(13 if has_verdicts else 8, 6.2))
    axes = fig.subplots(1, 2 if has_verdicts else 1, squeeze=False)[0]
    colours = _cluster_colours(diversity["k"])
    ax = axes[0]
    ax.scatter(x, y, c=[colours[c] for c in labels], s=14, alpha=0.8, linewidths=0)
    for c in range(diversity["k"]):
        members = labels == c
        if members.any():
            ax.text(
                x[members].mean(),
                y[members].mean(),
                str(c),
                fontsize=9,
                weight="bold",
                ha="center",
                va="center",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0},
            )
    ax.set_title(f"{diversity['tasks']} kept tasks in {diversity['k']} clusters")
    if has_verdicts:
        ax2 = axes[1]
        verdict = pts["verdict"]
        for value, colour, name in (
            (None, GREY, "no verdict"),
            (True, GREEN, "valid"),
            (False, RED, "not valid"),
        ):
            chosen = np.array([v is value for v in verdict])
            if chosen.any():
                ax2.scatter(
                    x[chosen],
                    y[chosen],
                    c=colour,
                    s=14 if value is None else 22,
                    alpha=0.8,
                    linewidths=0,
                    label=f"{name} ({int(chosen.sum())})",
                )
        ax2.set_title(f"Verdicts: {diversity['verdict_source']}")
    for a in axes:
        if seeds["x"]:
            a.scatter(
                seeds["x"],
                seeds["y"],
                marker="x",
                c="black",
                s=22,
                linewidths=1.0,
                label=f"seed tasks ({len(seeds['x'])})",
            )
        a.set_xlabel("first principal component")
        a.set_ylabel("second principal component")
        a.legend(loc="best", fontsize=8, framealpha=0.8)
    return to_data_uri(fig)


@styled
def plot_clusters(diversity: dict[str, Any] | None) -> str | None:
    """Cluster sizes, largest first, each named by its top verb-noun pair and its most central
    instruction, with how many seeds fall in it."""
    if not diversity:
        return None
    rows = diversity["clusters"]
    colours = _cluster_colours(diversity["k"])
    fig = Figure(figsize=(11, 0.36 * len(rows) + 1.4))
    ax = fig.subplots()
    ys = range(len(rows))
    ax.barh(ys, [r["size"] for r in rows], color=[colours[r["id"]] for r in rows])
    top = max(r["size"] for r in rows)
    for yv, row in zip(ys, rows, strict=True):
        seeds = f", {row['seeds']} seed(s)" if row["seeds"] else ", no seed"
        ax.text(row["size"], yv, f" {row['size']}{seeds}", va="center", fontsize=8)
    names = [f"{r['id']}: {r['pair'] or '-'} | {_clip_label(r['name'], 48)}" for r in rows]
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("kept tasks")
    ax.set_title(
        f"Clusters by size: the largest {diversity['top10_clusters']} hold {diversity['top10_share']:.0%} of the tasks"
    )
    return to_data_uri(fig)


def make_plots(figures: dict[str, Any]) -> dict[str, str | None]:
    """Every chart of the report by section name; None where a section has nothing to draw."""
    return {
        "funnel": plot_funnel(figures["funnel"]),
        "reasons": plot_reasons(figures["reasons"]),
        "novelty": plot_novelty(figures["novelty"]),
        "lengths": plot_lengths(figures["lengths"]),
        "shares": plot_shares(figures["shares"]),
        "verbs": plot_verbs(figures["verbs"]),
        "rounds": plot_rounds(figures["rounds"]),
        "judge": plot_judge(figures.get("judge")),
        "diversity": plot_diversity_map(figures.get("diversity")),
        "clusters": plot_clusters(figures.get("diversity")),
    }
