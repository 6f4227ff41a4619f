"""A run's curation view loaded with progress (a bar in a terminal, plain lines in a log) and its notes
printed: what `select`, `export --min-quality` and `train --select/--min-quality` share."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.core.console import console, make_progress


@contextmanager
def embedding_progress(total: int, quiet: bool) -> Iterator[Any]:
    """A callback advancing by n embedded texts."""
    if quiet or total == 0:
        yield None
        return
    if not sys.stderr.isatty():
        from pipeline.core.lines import line_tqdm

        bar = line_tqdm("embed: ", sys.stderr)(total=total, desc="instructions")
        try:
            yield bar.update
        finally:
            bar.close()
        return
    with make_progress() as progress:
        task = progress.add_task("embedding instructions", total=total)
        yield lambda n: progress.advance(task, n)


def open_view(run_dir: str | Path, *, quiet: bool = False, seed: int = 0) -> Any:
    """The run's CurateView; the embedding cache means only new instructions are embedded."""
    from pipeline.curate.runview import load_view
    from pipeline.run.reader import Run

    total = len(Run.open(run_dir).committed_tasks())
    with embedding_progress(total, quiet) as advance:
        view = load_view(run_dir, on_embedded=advance, seed=seed)
    if not quiet:
        for note in view.quality.notes:
            console.print(note)
    return view
