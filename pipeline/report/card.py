"""The run's dataset card: a README.md in the Hugging Face dataset-card format.

A YAML header (license, task categories, language, size category, pretty name) that the Hub reads,
then how the data was made (teacher, method, seeds, filters, counts) and its known limits, all
filled from the same figures as the HTML report so that the two never disagree.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from pipeline.report.human import human_card

# The Hub's size buckets, by number of rows (here: instances, one export row each).
SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)

# Teachers whose output terms we know: substring of the model name -> license id on the Hub.
KNOWN_TEACHER_LICENSES = {"smollm2": "apache-2.0", "bundled": "apache-2.0"}

METHODS = {
    "self-instruct": (
        "Self-Instruct (Wang et al., 2023): each round shows the teacher a few seed and earlier machine "
        "instructions and asks for new ones; each new instruction is classified (classification or not) "
        "and the teacher writes its instances (input/output pairs), output-first for classification tasks."
    ),
    "alpaca": (
        "Alpaca-style generation: one request asks the teacher for a batch of complete tasks "
        "(instruction, input, output) following a list of requirements, with a few seed tasks as examples."
    ),
}


def size_category(rows: int) -> str:
    for limit, name in SIZE_BUCKETS:
        if rows < limit:
            return name
    return "n>1B"


def infer_license(model: str) -> str:
    """The license id that the teacher's outputs carry when we know it; "other" otherwise."""
    name = model.lower()
    for key, license_id in KNOWN_TEACHER_LICENSES.items():
        if key in name:
            return license_id
    return "other"


def _yaml_header(figures: dict[str, Any], license_id: str, pretty_name: str) -> str:
    rows = figures["shares"]["instances"]
    header: dict[str, Any] = {
        "license": license_id,
        "task_categories": ["text-generation"],
        "language": ["en"],
        "size_categories": [size_category(rows)],
        "pretty_name": pretty_name,
        "tags": ["synthetic", "self-instruct", "instruction-tuning"],
    }
    if license_id == "other":
        header["license_name"] = "teacher-model-terms"
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _md(text: Any) -> str:
    """A table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _settings(settings: dict[str, Any]) -> str:
    """Flat `key=value` pairs of a config section, nested keys dotted."""
    flat: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat.append(f"`{prefix}={json.dumps(value, ensure_ascii=False)}`")

    walk("", settings)
    return ", ".join(flat)


def _fmt(value: Any, spec: str = ",") -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def known_limits(figures: dict[str, Any], license_id: str) -> list[str]:
    """Honest caveats: the ones every synthetic set has, and the ones this run's figures show."""
    ov, nov, verbs = figures["overview"], figures["novelty"], figures["verbs"]
    model = str(ov["teacher"]["model"])
    limits = [
        "Every instruction, input and output was written by a language model and none was checked by a "
        "person: outputs can be wrong, incomplete or made up, and classification labels can be inconsistent.",
        "The filters are heuristics (length, blacklisted words, formatting, refusals) and the deduplication "
        "is lexical (ROUGE-L): paraphrases of the same task can both be kept.",
        f"Topics and styles follow the {ov['seeds']} seed tasks and the teacher's habits; the data is in "
        "English only and is not a balanced sample of what people ask.",
    ]
    if "135m" in model.lower() or "bundled" in model.lower():
        limits.append(
            f"The teacher ({model}) is a very small model; this set shows the pipeline working end to end and "
            "is not expected to train a useful assistant. Use a larger teacher for real data."
        )
    if nov["scores"]["n"]:
        limits.append(
            f"{nov['above_0_5']} of {nov['scores']['n']} kept instructions have a ROUGE-L above 0.5 to a seed "
            f"instruction (mean {nov['scores']['mean']:.2f}): those are close variations of seed tasks."
        )
    if verbs["method"] != "spacy":
        limits.append(
            "The verb figures below count leading words, not parsed verbs (spaCy was not installed)."
        )
    if license_id == "other":
        limits.append(
            f"The license of this data depends on the terms of the teacher model ({model}); check them before "
            "publishing, and set the license field of this card."
        )
    limits.extend(f"Run files: {note}." for note in figures["notes"])
    return limits


def judge_section(judge: dict[str, Any] | None) -> str:
    """Which judge scored the data and its shares beside the Self-Instruct paper's; "" when not judged."""
    if not judge or not judge["scored"]:
        return ""
    who = "; ".join(
        f"`{j['model']}` via {j['backend']} (prompt version `{j['prompt_version']}`, {j['tasks']:,} tasks)"
        for j in judge["judges"]
    )
    rows = [
        [
            judge["labels"][key],
            f"{judge['shares'][key]:.1%} ({judge['yes'][key]:,})",
            f"{judge['paper'][key]:.0%}",
        ]
        for key in ("valid_instruction", "appropriate_input", "correct_output", "all_valid")
    ]
    text = (
        f"### Judge\n\nThe kept tasks were judged by a model: {who}. It answered the Self-Instruct "
        "paper's three questions for each task (all its instances) and gave a 1-5 score; verdicts are in the "
        f"run's `judgments.jsonl`. {judge['scored']:,} of {judge['tasks']:,} tasks were scored"
    )
    if judge["mean_score"] is not None:
        text += f", mean score {judge['mean_score']:.2f}"
    text += ". A judge is a model too: small judges agree poorly with people (see `bench/judge.py`).\n\n"
    if judge["caution"]:
        text += f"**Caution:** {judge['caution']}\n\n"
    text += _table(["question", "yes (this set)", "Self-Instruct paper (hand review)"], rows) + "\n"
    return text


def render_card(
    figures: dict[str, Any], *, license_id: str | None = None, pretty_name: str | None = None
) -> str:
    """The README.md text for a run's dataset."""
    ov, funnel, shares, lengths = (
        figures["overview"],
        figures["funnel"],
        figures["shares"],
        figures["lengths"],
    )
    nov, verbs, rounds = figures["novelty"], figures["verbs"], figures["rounds"]
    teacher = ov["teacher"]
    license_id = license_id or infer_license(str(teacher["model"]))
    pretty_name = pretty_name or f"selfinstruct {ov['run']}: {ov['method']} data from {teacher['model']}"
    method_text = METHODS.get(str(ov["method"]), f"Method `{ov['method']}` (see the run's config.yaml).")
    totals = rounds["totals"]

    parts = [_yaml_header(figures, license_id, pretty_name), f"# {pretty_name}\n"]
    parts.append(
        f"{shares['tasks']:,} instruction-following tasks ({shares['instances']:,} instruction/input/output "
        f"examples) generated with the {ov['method']} method by the teacher model `{teacher['model']}` "
        f"({teacher['backend']}), grown from {ov['seeds']} seed tasks over {ov['rounds']} round(s) by "
        "the selfinstruct pipeline (`selfinstruct generate`).\n"
    )
    parts.append("## Dataset structure\n")
    parts.append(
        "Each row is one instance of a task:\n\n"
        "- `instruction`: the task, in natural language\n"
        "- `input`: optional context for the task (empty when the instruction stands alone)\n"
        "- `output`: the teacher's answer\n"
        "- `task_id`: the task the instance belongs to (in the `hf` export; one task can have several instances)\n\n"
        "Export the run with `selfinstruct export RUN --format hf|alpaca|jsonl|messages -o PATH`; the `hf` export "
        "is a `datasets.DatasetDict` with `train` and `test` splits, loadable with `datasets.load_from_disk`.\n"
    )
    parts.append("## How the data was made\n")
    fingerprint = f" (fingerprint `{teacher['fingerprint']}`)" if teacher["fingerprint"] else ""
    threshold = ov["dedup_threshold"]
    parts.append(
        f"- **Teacher:** `{teacher['model']}` via {teacher['backend']}{fingerprint}.\n"
        f"- **Method:** {method_text}\n"
        f"- **Seeds:** {ov['seeds']} human-written seed tasks (`{ov['seeds_path']}`).\n"
        f"- **Filters:** every candidate passes rule-based instruction and instance filters, then ROUGE-L "
        f"deduplication against the seeds and every kept instruction"
        + (f" (rejected above {threshold})" if threshold is not None else "")
        + ". Every rejection is kept, with its reasons, in the run's `rejected.jsonl`."
        + (f" Filter settings: {_settings(ov['filters'])}." if ov.get("filters") else "")
        + "\n"
        f"- **Teacher work:** {_fmt(totals['requests'])} requests, {_fmt(totals['prompt_tokens'])} prompt and "
        f"{_fmt(totals['completion_tokens'])} completion tokens, {_fmt(totals['seconds'], ',.0f')} s of teacher "
        f"time over {rounds['count']} round(s)"
        + (f", cost ${totals['cost']:,.4f}" if isinstance(totals["cost"], int | float) else "")
        + ".\n"
    )
    parts.append("### Counts\n")
    funnel_rows = [
        [s["step"], _fmt(s.get("removed")) if "removed" in s else "", _fmt(s["count"])]
        for s in funnel["steps"]
    ]
    funnel_rows += [
        [f"not a candidate: {o['label']} (`{o['stage']}`)", _fmt(o["count"]), ""]
        for o in funnel["other_records"]
    ]
    parts.append(_table(["step", "removed", "left"], funnel_rows) + "\n")
    if figures["reasons"]:
        parts.append("\nRejection reasons (a rejected candidate can have several):\n")
        reason_rows = [
            [f"`{r['reason']}`", ", ".join(r["stages"]), _fmt(r["count"])] for r in figures["reasons"]
        ]
        parts.append(_table(["reason", "stage", "count"], reason_rows) + "\n")
    reviewed = human_card(figures.get("human"))
    if reviewed:
        parts.append(reviewed)
    judged = judge_section(figures.get("judge"))
    if judged:
        parts.append(judged)
    parts.append("## What the data looks like\n")
    look = [
        f"- Classification tasks: {shares['classification']:,} ({shares['classification_share']:.1%}); tasks with "
        f"an input: {shares['with_input']:,} ({shares['with_input_share']:.1%}); "
        f"{shares['instances_per_task']:.2f} instances per task.",
    ]
    for key, label in (("instruction", "Instruction"), ("input", "Non-empty input"), ("output", "Output")):
        part = lengths[key]
        if part["n"]:
            look.append(
                f"- {label} length: median {part['median']:g} words (min {part['min']:g}, max {part['max']:g})."
            )
    if nov["scores"]["n"]:
        look.append(
            f"- Novelty: mean ROUGE-L to the most similar seed instruction {nov['scores']['mean']:.3f} "
            f"(median {nov['scores']['median']:.3f}, max {nov['scores']['max']:.3f})."
        )
    if verbs["verbs"]:
        what = "root verbs (spaCy parse)" if verbs["method"] == "spacy" else "leading words"
        top = ", ".join(f"{v['verb']} ({v['count']})" for v in verbs["verbs"][:10])
        look.append(f"- Most common {what}: {top}.")
    parts.append("\n".join(look) + "\n")
    parts.append("## Known limits\n")
    parts.append("\n".join(f"- {limit}" for limit in known_limits(figures, license_id)) + "\n")
    parts.append("## Reproduce\n")
    parts.append(
        "The run directory holds the resolved `config.yaml`; rerunning `selfinstruct generate --config "
        f"{ov['run_dir']}/config.yaml --run-dir NEW_DIR` repeats the method, and `selfinstruct report` "
        "rebuilds this card and the HTML report from the run's files.\n"
    )
    return "\n".join(parts)
