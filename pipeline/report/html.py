"""report.html: one self-contained page (inline CSS, charts as data: URIs) that opens offline.

The page is assembled from escaped fragments; there is no template engine to install and nothing is
loaded from the network. Each section has a stable id (overview, funnel, reasons, novelty, lengths,
shares, review, judge, verbs, rounds, evolution (evol-instruct runs only), sample, config) so that tests and
links can find it.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from pipeline.report.context import student_html, timing_html, toy_teacher_caution
from pipeline.report.human import human_html
from pipeline.report.public import hub_model_id

SECTIONS = (
    ("overview", "Overview"),
    ("funnel", "Funnel"),
    ("reasons", "Rejection reasons"),
    ("novelty", "Novelty vs. seeds"),
    ("lengths", "Lengths"),
    ("shares", "Task types"),
    ("review", "People's review"),
    ("judge", "Judge"),
    ("verbs", "Verbs and objects"),
    ("diversity", "Diversity map"),
    ("rounds", "Rounds"),
    ("evolution", "Evolution"),
    ("sample", "Sample"),
    ("config", "Configuration"),
)

CSS = """
:root { --ink:#1f2933; --muted:#5f6b7a; --line:#dde3ea; --bg:#f6f8fa; --accent:#3b6ea8; --bad:#c0504d; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#1f3b5c; color:#fff; padding:22px 32px 16px; }
header h1 { margin:0 0 4px; font-size:26px; }
header p { margin:0; color:#c9d6e5; }
nav { position:sticky; top:0; z-index:2; background:#fff; border-bottom:1px solid var(--line);
      padding:8px 32px; display:flex; flex-wrap:wrap; gap:4px 16px; font-size:14px; }
nav a { color:var(--accent); text-decoration:none; }
main { max-width:1180px; margin:0 auto; padding:12px 32px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; margin:18px 0; padding:6px 22px 18px; }
h2 { font-size:20px; margin:14px 0 8px; border-bottom:2px solid var(--line); padding-bottom:4px; }
h3 { font-size:16px; margin:16px 0 6px; }
p.lead { color:var(--muted); margin:4px 0 12px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(160px,1fr)); gap:10px; margin:10px 0 16px; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:var(--bg); }
.card .v { font-size:22px; font-weight:600; }
.card .k { color:var(--muted); font-size:13px; }
table { border-collapse:collapse; width:100%; margin:8px 0 12px; font-size:14px; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left; vertical-align:top; }
th { background:var(--bg); font-weight:600; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.ex { color:#333; font-size:13px; max-width:560px; overflow-wrap:anywhere; }
tr.total td { font-weight:600; border-top:2px solid var(--line); }
img.chart { display:block; max-width:100%; height:auto; margin:8px auto; }
.banner { max-width:1116px; margin:14px auto 0; font-size:15px; }
.note { border-left:4px solid #d9822b; background:#fff6ea; padding:8px 12px; margin:10px 0; font-size:14px; }
.method { border-left:4px solid var(--accent); background:#eef4fb; padding:8px 12px; margin:10px 0; font-size:14px; }
.detail { color:var(--muted); font-size:12px; margin-top:2px; }
.empty { color:var(--muted); font-style:italic; }
.task { border:1px solid var(--line); border-radius:6px; padding:10px 14px; margin:10px 0; }
.task .meta { color:var(--muted); font-size:12px; }
.task .instr { font-weight:600; margin:4px 0 6px; }
.io { display:grid; grid-template-columns:80px 1fr; gap:2px 10px; font-size:14px; margin-top:6px; }
.io + .io { border-top:1px dashed var(--line); padding-top:6px; }
.io .lab { color:var(--muted); }
pre, .io .txt { white-space:pre-wrap; overflow-wrap:anywhere; margin:0; font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:13px; }
pre.config { background:var(--bg); border:1px solid var(--line); padding:10px; max-height:520px; overflow:auto; }
.tag { display:inline-block; background:#e6edf5; border-radius:10px; padding:0 8px; font-size:12px; margin-left:6px; }
footer { color:var(--muted); font-size:13px; text-align:center; padding:10px 0 30px; }
"""

CLIP = 700


def _int(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) else "–"


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "–"


def _num(value: Any, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else "–"


def _cost(value: Any) -> str:
    return f"${value:,.4f}" if isinstance(value, int | float) else "not priced"


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def _clip(text: str, limit: int = CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(
    headers: list[str],
    rows: list[list[str]],
    numeric: set[int] | frozenset[int] = frozenset(),
    total: list[str] | None = None,
    wide: set[int] | frozenset[int] = frozenset(),
) -> str:
    """An HTML table from already-escaped cells; `numeric` columns align right, `wide` ones hold long text."""

    def cls(k: int) -> str:
        return ' class="n"' if k in numeric else (' class="ex"' if k in wide else "")

    def cells(row: list[str], tag: str) -> str:
        return "".join(f"<{tag}{cls(k)}>{c}</{tag}>" for k, c in enumerate(row))

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    if total is not None:
        body += f'<tr class="total">{cells(total, "td")}</tr>'
    head = f"<thead><tr>{cells(headers, 'th')}</tr></thead>" if any(headers) else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _img(uri: str | None, alt: str) -> str:
    return f'<img class="chart" src="{uri}" alt="{escape(alt)}">' if uri else ""


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _dtype(teacher: dict[str, Any]) -> str:
    """ "bfloat16 (cpu has avx512_bf16)"; "–" where the run did not record it (a remote server's)."""
    if not teacher.get("dtype"):
        return "–"
    reason = teacher.get("dtype_reason")
    return f"{teacher['dtype']} ({reason})" if reason else str(teacher["dtype"])


def _overview(fig: dict[str, Any]) -> str:
    ov, funnel = fig["overview"], fig["funnel"]
    tokens = [v for v in (ov["prompt_tokens"], ov["completion_tokens"]) if isinstance(v, int | float)]
    cards = [
        ("kept tasks", _int(ov["kept_tasks"])),
        ("instances", _int(ov["instances"])),
        ("rounds", _int(ov["rounds"])),
        ("candidates", _int(funnel["candidates"])),
        ("kept of candidates", _pct(funnel["kept_share_of_candidates"])),
        ("rejected records", _int(ov["rejected"])),
        ("tokens (prompt + completion)", _int(sum(tokens)) if tokens else "–"),
        ("teacher time", _seconds(ov["seconds"])),
        ("tokens / s", _num(ov["tokens_per_s"])),
        ("cost", _cost(ov["cost"])),
    ]
    card_html = "".join(
        f'<div class="card"><div class="v">{escape(v)}</div><div class="k">{escape(k)}</div></div>'
        for k, v in cards
    )
    teacher = ov["teacher"]
    updated = (
        dt.datetime.fromtimestamp(ov["updated_at"], tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if isinstance(ov["updated_at"], int | float)
        else "–"
    )
    rows = [
        ["method", escape(str(ov["method"]))],
        ["teacher", escape(f"{teacher['backend']}: {hub_model_id(str(teacher['model']))}")],
        ["teacher fingerprint", f"<code>{escape(str(teacher['fingerprint']) or '–')}</code>"],
        ["teacher dtype", escape(_dtype(teacher))],
        ["seeds", escape(f"{ov['seeds']} tasks from {ov['seeds_file']}")],
        ["decoding", escape(ov["decoding"])],
        [
            "dedup threshold (ROUGE-L)",
            escape(str(ov["dedup_threshold"]) if ov["dedup_threshold"] is not None else "–"),
        ],
        ["run", f"<code>{escape(ov['run'])}</code>"],
        ["summary updated", escape(updated)],
    ]
    notes = "".join(f'<div class="note">{escape(n)}</div>' for n in fig["notes"])
    return f'<div class="cards">{card_html}</div>{_table(["", ""], rows)}{notes}'


def _funnel(fig: dict[str, Any], plot: str | None) -> str:
    funnel = fig["funnel"]
    cand = funnel["candidates"]
    rows = []
    for step in funnel["steps"]:
        removed = step.get("removed")
        share = step["count"] / cand if cand and step is not funnel["steps"][0] else None
        rows.append(
            [
                escape(step["step"]),
                _int(removed) if removed is not None else "",
                _int(step["count"]),
                _pct(share) if share is not None else "",
            ]
        )
    lead = (
        '<p class="lead">Each teacher request yields candidate instructions; each check removes some. '
        "Rejections come from rejected.jsonl, kept tasks from machine_tasks.jsonl, requests and candidates "
        "from summary.json.</p>"
    )
    side = ""
    if funnel["other_records"]:
        items = "".join(
            f"<tr><td>{escape(o['label'])} <code>{escape(o['stage'])}</code></td><td class=n>{_int(o['count'])}</td></tr>"
            for o in funnel["other_records"]
        )
        side = (
            '<h3>Beside the funnel</h3><p class="lead">Rejection records that are not candidate tasks: problems '
            "in teacher replies before any candidate was parsed, and single instances dropped from tasks that "
            f"were kept.</p><table><tbody>{items}</tbody></table>"
        )
    table = _table(["step", "removed", "left", "left, share of candidates"], rows, {1, 2, 3})
    return lead + _img(plot, "funnel chart") + table + side


def _reasons(fig: dict[str, Any], plot: str | None) -> str:
    reasons = fig["reasons"]
    if not reasons:
        return _empty("Nothing was rejected.")
    rows = [
        [
            f"<code>{escape(r['reason'])}</code>",
            escape(", ".join(r["stages"])),
            _int(r["count"]),
            _pct(r["share_of_rejected"]),
            f"{escape(r['example'])} <span class=tag>round {r['example_round']}</span>"
            + (f'<div class="detail">{escape(r["detail"])}</div>' if r["detail"] else ""),
        ]
        for r in reasons
    ]
    funnel = fig["funnel"]
    lead = (
        f'<p class="lead">{_int(funnel["rejected"])} rejected records over {len(funnel["rejected_by_stage"])} '
        "stage(s); a record can carry several reasons, so the counts can add up to more. Each example is the "
        "first record with that reason.</p>"
    )
    table = _table(["reason", "stage", "count", "of rejected", "example"], rows, {2, 3}, wide={4})
    return lead + _img(plot, "rejection reasons chart") + table


def _novelty(fig: dict[str, Any], plot: str | None) -> str:
    nov = fig["novelty"]
    s = nov["scores"]
    if not s["n"]:
        return _empty("No kept tasks yet.")
    lead = (
        f'<p class="lead">For each kept instruction, the ROUGE-L F-measure ({escape(nov["tokenizer"])} tokenizer) '
        f"against its most similar of the {nov['seeds']} seed instructions. Low scores mean new tasks, not "
        f"rephrased seeds. {nov['above_0_5']} of {s['n']} score above 0.5.</p>"
    )
    stats = _table(
        ["instructions", "min", "median", "mean", "max"],
        [[_int(s["n"]), _num(s["min"], 3), _num(s["median"], 3), _num(s["mean"], 3), _num(s["max"], 3)]],
        {0, 1, 2, 3, 4},
    )
    closest = _table(
        ["kept instruction", "most similar seed", "ROUGE-L"],
        [
            [escape(_clip(c["instruction"], 300)), escape(_clip(c["seed"], 300)), _num(c["score"], 3)]
            for c in nov["closest"]
        ],
        {2},
        wide={0, 1},
    )
    return lead + _img(plot, "novelty histogram") + stats + "<h3>Closest to a seed</h3>" + closest


def _lengths(fig: dict[str, Any], plot: str | None) -> str:
    parts = fig["lengths"]
    if not parts["instruction"]["n"]:
        return _empty("No kept tasks yet.")
    names = {"instruction": "instruction", "input": "input (non-empty)", "output": "output"}
    rows = [
        [names[k], _int(p["n"]), _int(p["min"]), _num(p["median"]), _num(p["mean"]), _int(p["max"])]
        for k, p in parts.items()
    ]
    return (
        '<p class="lead">Words (whitespace-separated) per instruction, per non-empty input and per output; '
        "inputs and outputs are counted per instance.</p>"
        + _img(plot, "length histograms")
        + _table(["text", "count", "min", "median", "mean", "max"], rows, {1, 2, 3, 4, 5})
    )


def _shares(fig: dict[str, Any], plot: str | None) -> str:
    sh = fig["shares"]
    if not sh["tasks"]:
        return _empty("No kept tasks yet.")
    rows = [
        [
            "classification tasks",
            _int(sh["classification"]),
            _pct(sh["classification_share"]),
            "of kept tasks",
        ],
        ["tasks with an input", _int(sh["with_input"]), _pct(sh["with_input_share"]), "of kept tasks"],
        [
            "instances with an input",
            _int(sh["instances_with_input"]),
            _pct(sh["instances_with_input_share"]),
            "of instances",
        ],
        ["instances per task", _num(sh["instances_per_task"], 2), "", f"{_int(sh['instances'])} instances"],
    ]
    return _img(plot, "task type shares") + _table(["", "count", "share", ""], rows, {1, 2})


def _judge(fig: dict[str, Any], plot: str | None) -> str:
    """The Self-Instruct paper's quality table for this run, the score histogram, the lowest-scored tasks."""
    judge = fig.get("judge")
    if not judge or not judge["judged"]:
        return _empty("Not judged: run `selfinstruct judge RUN` to score every kept task.")
    who = "; ".join(
        f"{j['backend']}: {j['model']} (prompt {j['prompt_version']}, {j['tasks']:,} tasks)"
        for j in judge["judges"]
    )
    lead = (
        f'<p class="lead">A judge model answered the three questions the Self-Instruct authors asked of 200 of '
        f"their tasks, for each kept task (all its instances). Judge: {escape(who)}. Shares are of the "
        f"{_int(judge['scored'])} scored tasks; the paper's figures are from a hand review of GPT-3 data.</p>"
    )
    rows = []
    for key in ("valid_instruction", "appropriate_input", "correct_output", "all_valid"):
        share = judge["shares"][key]
        rows.append(
            [
                escape(judge["labels"][key]),
                _pct(share) if share is not None else "–",
                _int(judge["yes"][key]),
                _pct(judge["paper"][key]),
            ]
        )
    table = _table(["question", "yes (this run)", "tasks", "Self-Instruct paper"], rows, {1, 2, 3})
    left = judge["unscored"] + judge["failed"] + judge["not_judged"]
    note = ""
    if left:
        reasons = ", ".join(f"{k} {v}" for k, v in judge["unscored_reasons"].items())
        note = (
            f'<div class="note">{_int(left)} of {_int(judge["tasks"])} tasks have no score: '
            f"{_int(judge['unscored'])} unscored, {_int(judge['failed'])} failed requests, "
            f"{_int(judge['not_judged'])} not judged yet"
            + (f" ({escape(reasons)})" if reasons else "")
            + ".</div>"
        )
    lowest = []
    for task in judge["lowest"]:
        answers = ", ".join(
            f"{q.replace('_', ' ')}: {'yes' if v else 'no'}" for q, v in task["answers"].items()
        )
        ios = "".join(
            '<div class="io">'
            + (
                f'<div class="lab">input</div><div class="txt">{escape(_clip(i["input"]))}</div>'
                if i["input"].strip()
                else ""
            )
            + f'<div class="lab">output</div><div class="txt">{escape(_clip(i["output"]))}</div></div>'
            for i in task["instances"]
        )
        lowest.append(
            f'<div class="task"><div class="meta">{escape(task["id"])} <span class=tag>score {task["score"]}</span> '
            f'{escape(answers)}</div><div class="instr">{escape(_clip(task["instruction"]))}</div>{ios}'
            f'<div class="detail">judge: {escape(task["reason"])}</div></div>'
        )
    worst = "<h3>Lowest-scored tasks</h3>" + "".join(lowest) if lowest else ""
    caution = (
        f'<div class="note"><b>Caution:</b> {escape(judge["caution"])}</div>' if judge["caution"] else ""
    )
    return lead + caution + table + note + _img(plot, "judge score histogram") + worst


def _verbs(fig: dict[str, Any], plot: str | None) -> str:
    verbs = fig["verbs"]
    method = (
        f"<b>Method: {'dependency parse' if verbs['method'] == 'spacy' else 'leading word (no parser)'}</b>"
        + (f" ({escape(verbs['parser'])})" if verbs["parser"] else "")
        + f". {escape(verbs['description'])}"
    )
    head = (
        f'<div class="method">{method}</div><p class="lead">{_int(verbs["with_verb"])} of '
        f"{_int(verbs['instructions'])} instructions have a verb"
        + (
            f", {_int(verbs['with_verb_noun'])} a verb with a direct object"
            if verbs["method"] == "spacy"
            else ""
        )
        + f"; {_int(verbs['distinct_verbs'])} distinct verbs.</p>"
    )
    if not verbs["verbs"]:
        return head + _empty("No verbs found.")
    rows = [
        [
            escape(v["verb"]),
            _int(v["count"]),
            escape(", ".join(f"{n['noun']} ({n['count']})" for n in v["nouns"]) or "–"),
        ]
        for v in verbs["verbs"]
    ]
    return (
        head
        + _img(plot, "verb chart")
        + _table(["verb", "instructions", "most common direct objects"], rows, {1})
    )


def _diversity(fig: dict[str, Any], plot: str | None, bars: str | None) -> str:
    div = fig.get("diversity")
    if not div:
        return _empty("Fewer than 4 kept tasks, or the map was not drawn (`report --no-map`).")
    lead = (
        f'<p class="lead">{_int(div["tasks"])} kept instructions in {div["k"]} clusters (k-means on '
        f"{escape(div['embedder'])} embeddings). The largest {div['top10_clusters']} cluster(s), 10% of "
        f"them, hold {_pct(div['top10_share'])} of the tasks.</p>"
    )
    seeds = ""
    if div.get("near_seeds") is not None:
        seeds = (
            f"<p>Against the {_int(div['seeds'])} seeds: {_pct(div['near_seeds'])} of the kept tasks are within "
            f"cosine {div['near_seed_threshold']} of a seed (circling it), {_pct(div['beyond_seeds'])} are "
            f"farther than {div['beyond_seed_threshold']} from every seed (beyond them); median similarity "
            f"to the nearest seed {div['median_seed_similarity']:.2f}. {div['clusters_without_seeds']} "
            f"cluster(s), {_int(div['tasks_in_clusters_without_seeds'])} tasks, have no seed; "
            f"{_int(div['seeds_left_alone'])} seeds have no kept task within {div['beyond_seed_threshold']}.</p>"
        )
    caution = (
        f'<div class="note"><b>Caution:</b> {escape(div["caution"])}</div>' if div.get("caution") else ""
    )
    rows = [
        [
            str(c["id"]),
            _int(c["size"]),
            escape(c["pair"] or "–"),
            escape(_clip(c["name"])),
            _int(c["seeds"]),
            _pct(c["valid_share"]) if c["valid_share"] is not None else "–",
        ]
        for c in div["clusters"]
    ]
    table = _table(
        ["cluster", "tasks", "top verb-noun", "most central instruction", "seeds", "valid"], rows, {1, 4}
    )
    return lead + seeds + caution + _img(plot, "diversity map") + _img(bars, "cluster sizes") + table


def _rounds(fig: dict[str, Any], plot: str | None) -> str:
    rnd = fig["rounds"]
    if not rnd["rows"]:
        return _empty("summary.json lists no rounds.")

    def row(r: dict[str, Any], label: str) -> list[str]:
        return [
            label,
            _int(r["requests"]),
            _int(r["cache_hits"]),
            _int(r["prompt_tokens"]),
            _int(r["completion_tokens"]),
            _cost(r["cost"]),
            _seconds(r["seconds"]),
            _num(r["tokens_per_s"]),
            _int(r["candidates"]),
            _int(r["kept"]),
        ]

    rows = [row(r, str(r["round"])) for r in rnd["rows"]]
    headers = [
        "round",
        "requests",
        "cache hits",
        "prompt tok.",
        "completion tok.",
        "cost",
        "time",
        "tok/s",
        "candidates",
        "kept",
    ]
    table = _table(headers, rows, set(range(1, 10)), total=row(rnd["totals"], "total"))
    return (
        '<p class="lead">The teacher\'s work per round, from summary.json; tokens per second are generated '
        "(completion) tokens per second of teacher time.</p>" + table + _img(plot, "rounds chart")
    )


def _sample(fig: dict[str, Any]) -> str:
    tasks = fig["sample"]
    if not tasks:
        return _empty("No kept tasks yet.")
    out = [f'<p class="lead">{len(tasks)} kept tasks drawn at random (fixed seed), in file order.</p>']
    for task in tasks:
        tags = f"<span class=tag>round {task['round']}</span>"
        if task["is_classification"]:
            tags += "<span class=tag>classification</span>"
        ios = []
        for inst in task["instances"]:
            pair = ""
            if inst["input"].strip():
                pair += f'<div class="lab">input</div><div class="txt">{escape(_clip(inst["input"]))}</div>'
            pair += f'<div class="lab">output</div><div class="txt">{escape(_clip(inst["output"]))}</div>'
            ios.append(f'<div class="io">{pair}</div>')
        more = (
            f'<div class="meta">+ {task["more_instances"]} more instance(s)</div>'
            if task["more_instances"]
            else ""
        )
        out.append(
            f'<div class="task"><div class="meta">{escape(task["id"])} {tags}</div>'
            f'<div class="instr">{escape(_clip(task["instruction"]))}</div>{"".join(ios)}{more}</div>'
        )
    return "".join(out)


def _evolution(fig: dict[str, Any]) -> str | None:
    """evol-instruct's kept share per operation and per depth; no section for other methods."""
    evo = fig.get("evolution")
    if not evo:
        return None
    parts = ['<p class="lead">The share of evolutions kept (every rejected one counts as tried).</p>']
    for key, title in (("operation", "operation"), ("depth", "depth")):
        rows = [[str(r[key]), _int(r["tried"]), _int(r["kept"]), _pct(r["share"])] for r in evo[f"by_{key}"]]
        parts.append(_table([title, "tried", "kept", "kept share"], rows, {1, 2, 3}))
    return "".join(parts)


def _config(config_text: str) -> str:
    if not config_text.strip():
        return _empty("config.yaml is missing.")
    return (
        f'<p class="lead">The run\'s resolved config.yaml.</p><pre class="config">{escape(config_text)}</pre>'
    )


def _caution(teacher: dict[str, Any]) -> str:
    """At the very top, before any figure: what a toy teacher means for the data."""
    text = toy_teacher_caution(str(teacher["model"]))
    return (
        f'<div class="note banner" id="teacher-caution"><b>Caution:</b> {escape(text)}</div>' if text else ""
    )


def render_html(figures: dict[str, Any], plots: dict[str, str | None], config_text: str) -> str:
    """The whole page for `figures` (from pipeline.report.figures) with `plots` (from pipeline.report.plots)."""
    ov = figures["overview"]
    bodies = {
        "overview": _overview(figures)
        + timing_html(figures["rounds"].get("timing", {}))
        + student_html(figures.get("student", [])),
        "funnel": _funnel(figures, plots.get("funnel")),
        "reasons": _reasons(figures, plots.get("reasons")),
        "novelty": _novelty(figures, plots.get("novelty")),
        "lengths": _lengths(figures, plots.get("lengths")),
        "shares": _shares(figures, plots.get("shares")),
        "review": human_html(figures.get("human")),
        "judge": _judge(figures, plots.get("judge")),
        "verbs": _verbs(figures, plots.get("verbs")),
        "diversity": _diversity(figures, plots.get("diversity"), plots.get("clusters")),
        "rounds": _rounds(figures, plots.get("rounds")),
        "evolution": _evolution(figures),
        "sample": _sample(figures),
        "config": _config(config_text),
    }
    shown = [(sid, title) for sid, title in SECTIONS if bodies[sid] is not None]
    nav = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title in shown)
    sections = "".join(
        f'<section id="{sid}"><h2>{escape(title)}</h2>{bodies[sid]}</section>' for sid, title in shown
    )
    title = f"Run report: {ov['run']}"
    teacher = ov["teacher"]
    subtitle = (
        f"{ov['method']} with {teacher['backend']}: {hub_model_id(str(teacher['model']))} · {ov['kept_tasks']:,} kept tasks · "
        f"{ov['rounds']} round(s)"
    )
    generated = dt.datetime.now(tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header><nav>{nav}</nav>{_caution(teacher)}"
        f"<main>{sections}</main><footer>Written by <code>selfinstruct report</code> on {generated}.</footer>"
        "</body></html>\n"
    )
