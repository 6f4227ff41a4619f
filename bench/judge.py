"""Know the judge: how well a judge model answers the paper's three questions on labelled tasks.

bench/data/judge_calibration.jsonl holds 60 hand-written tasks in the seed format, each with labels:
30 correct ones (all three questions yes) and 30 with one planted defect, 10 of each kind:
- instruction: nonsense or impossible for a text-only model -> instruction no, input yes, output no;
- input: an input that does not fit the instruction -> instruction yes, input no, output no;
- output: a wrong output (wrong fact, wrong language, filler, the instruction repeated) -> output no.

The judge scores them through `selfinstruct judge` (a throw-away run directory, or --run-dir to keep
its cache); we print, per question and for "all three", the judge's accuracy and Cohen's kappa against
the labels, next to the baseline of a judge that answers yes to everything (measured on the same
labels), the mean score of correct and defective tasks, and how many replies were unusable. An
unscored task counts as a wrong answer in the accuracy; kappa is over the scored tasks.

    python bench/judge.py [--teacher vllm|openai] [--model bundled] [--base-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.jsonio import iter_jsonl  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "judge_calibration.jsonl"
KEYS = ("valid_instruction", "appropriate_input", "correct_output", "all_valid")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", choices=["vllm", "openai"], default="vllm")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--base-url", action="append", default=[])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--run-dir", type=Path, default=None, help="keep the run (and its judge cache) here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    from pipeline.core.jsonio import append_jsonl
    from pipeline.judge.config import JudgeConfig
    from pipeline.judge.runner import judge_run
    from pipeline.judge.stats import cohen_kappa
    from pipeline.run.judgments import read_judgments
    from pipeline.run.rundir import RunDir, RunState
    from pipeline.run.schemas import Instance, MachineTask, TeacherIdentity
    from pipeline.teachers import EngineOptions, TeacherConfig

    rows = [row for _, row in iter_jsonl(args.data)]
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="judge-bench-"))
    run = RunDir(run_dir)
    if not run.tasks_path.exists():
        run.path.mkdir(parents=True, exist_ok=True)
        author = TeacherIdentity(backend="human", model="calibration")
        tasks = [
            MachineTask(
                id=row["id"],
                instruction=row["instruction"],
                instances=[Instance(**i) for i in row["instances"]],
                is_classification=row["is_classification"],
                round=1,
                method="calibration",
                teacher=author,
            )
            for row in rows
        ]
        append_jsonl(run.tasks_path, tasks)
        run.write_state(RunState(rounds_done=1, kept_total=len(tasks)))

    engine = EngineOptions(max_model_len=4096, gpu_memory_utilization=0.3)
    teacher = TeacherConfig(backend=args.teacher, model=args.model, base_urls=args.base_url, engine=engine)
    config = JudgeConfig(teacher=teacher)
    started = time.perf_counter()
    outcome = judge_run(run_dir, config)
    seconds = time.perf_counter() - started
    judgments = read_judgments(run_dir)

    results: dict[str, dict] = {}
    for key in KEYS:
        truth, said, yes_baseline = [], [], []
        correct = 0
        for row in rows:
            label = all(row["labels"].values()) if key == "all_valid" else row["labels"][key]
            yes_baseline.append(label is True)
            judgment = judgments.get(row["id"])
            if judgment is None or not judgment.scored:
                continue
            answer = judgment.all_valid if key == "all_valid" else bool(getattr(judgment, key))
            truth.append(label)
            said.append(answer)
            correct += answer == label
        accuracy = correct / len(rows)
        baseline = sum(yes_baseline) / len(rows)
        kappa = cohen_kappa(truth, said)
        results[key] = {
            "accuracy": accuracy,
            "always_yes_accuracy": baseline,
            "ratio_to_always_yes": accuracy / baseline if baseline else None,
            "kappa": kappa,
            "scored": len(said),
            "said_yes": sum(said),
        }
    scores = {"correct": [], "defective": []}
    for row in rows:
        judgment = judgments.get(row["id"])
        if judgment is not None and judgment.scored:
            scores["correct" if row["defect"] == "none" else "defective"].append(judgment.score)
    summary = {
        "judge": outcome.judge.model_dump(),
        "prompt_version": outcome.prompt_version,
        "tasks": len(rows),
        "scored": sum(j.scored for j in judgments.values()),
        "unscored": dict(Counter(j.reason.split(":")[0] for j in judgments.values() if not j.scored)),
        "questions": results,
        "mean_score": {k: statistics.fmean(v) if v else None for k, v in scores.items()},
        "seconds": round(seconds, 1),
        "asked": outcome.asked,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "run_dir": str(run_dir),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    judge = summary["judge"]
    print(
        f"judge {judge['backend']}: {judge['model']} (prompt {summary['prompt_version']}) on {len(rows)} labelled tasks"
    )
    print(f"cpu capability: {summary['cpu_capability']}; {summary['asked']} asked in {summary['seconds']} s")
    print(f"scored {summary['scored']} of {len(rows)}; unusable replies: {summary['unscored'] or 'none'}")
    print(f"{'question':<20} {'accuracy':>9} {'always-yes':>11} {'ratio':>6} {'kappa':>7} {'said yes':>9}")
    for key, r in results.items():
        kappa = "n/a" if r["kappa"] is None else f"{r['kappa']:+.3f}"
        ratio = "n/a" if r["ratio_to_always_yes"] is None else f"{r['ratio_to_always_yes']:.2f}"
        print(
            f"{key:<20} {r['accuracy']:>9.1%} {r['always_yes_accuracy']:>11.1%} {ratio:>6} {kappa:>7} "
            f"{r['said_yes']:>4}/{r['scored']}"
        )
    means = summary["mean_score"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"mean score: correct tasks {fmt(means['correct'])}, defective tasks {fmt(means['defective'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
