"""Writing a run's report.html and dataset card README.md: the figures once, both pages from them.

`selfinstruct report` and `selfinstruct push` both call `write_report`, so the pages they write agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.console import make_progress


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    seeds: str | Path | None = None,
    sample: int = 10,
    verb_method: str = "auto",
    license_id: str | None = None,
    repo_id: str | None = None,
    quiet: bool = True,
    diversity_map: bool = True,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Compute a run's figures, then write report.html and README.md atomically; return both."""
    from pipeline.core.jsonio import write_text_atomic
    from pipeline.core.outputs import check_output_dir
    from pipeline.report.card import render_card
    from pipeline.report.figures import compute_report, load_run
    from pipeline.report.html import render_html
    from pipeline.report.licenses import check_license
    from pipeline.report.plots import make_plots
    from pipeline.report.public import scrub_machine_paths

    if license_id is not None:
        license_id = check_license(license_id)
    run = load_run(run_dir)
    target = Path(out) if out is not None else run.run_dir
    check_output_dir(target, "--out" if out is not None else "RUN_DIR")
    seeds_path, seed_tasks = run.source.seeds(seeds, flag="--seeds")
    n = len(run.tasks)
    with make_progress(quiet=quiet) as progress:
        novelty_bar = progress.add_task("novelty vs. seeds", total=n)
        verbs_bar = progress.add_task("verb analysis", total=n)
        embed_bar = progress.add_task("embedding (diversity map)", total=n if diversity_map else 0)
        figures = compute_report(
            run,
            seed_tasks,
            seeds_path,
            sample=sample,
            verb_method=verb_method,
            on_novelty=lambda k: progress.advance(novelty_bar, k),
            on_verbs=lambda k: progress.advance(verbs_bar, k),
            diversity_map=diversity_map,
            on_embedded=lambda k: progress.advance(embed_bar, k),
        )
        charts_bar = progress.add_task("charts", total=1)
        plots = make_plots(figures)
        progress.advance(charts_bar)
    paths = {"report": target / "report.html", "card": target / "README.md"}
    html = render_html(figures, plots, figures["overview"]["config_public"])
    card = render_card(figures, license_id=license_id, repo_id=repo_id)
    # Both pages may be published (`selfinstruct push`): no absolute path of this machine in them.
    write_text_atomic(paths["report"], scrub_machine_paths(html, run.run_dir))
    write_text_atomic(paths["card"], scrub_machine_paths(card, run.run_dir))
    return figures, paths
