"""`generate --dry-run`: every check a run makes before its first request, and nothing else.

The config (already validated by the time this runs), the seeds and templates by the run's own rules,
the run directory (writable; new, resumable, or refused without --force), and the teacher: a server
must answer at its base URL(s); an in-process model must be there to load (the bundled GGUF, a local
folder, or a hub id in the local cache). No engine starts, no request is sent, nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError
from pipeline.core.model import BUNDLED_ALIASES, bundled_gguf_path
from pipeline.generate.config import GenerateConfig
from pipeline.generate.protocol import load_inputs, resume_differences
from pipeline.run.rundir import RunDir, file_digest
from pipeline.teachers.config import TeacherConfig
from pipeline.teachers.reach import check_reachable
from pipeline.teachers.runtime import teacher_identity


def _model_check(teacher: TeacherConfig) -> str:
    """Where the in-process model will load from; a `UserError` when it cannot be found."""
    if teacher.model in BUNDLED_ALIASES:
        return f"the bundled model ({bundled_gguf_path().name})"
    local = Path(teacher.model).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise UserError(f"teacher.model {teacher.model}: the folder has no config.json (not a HF model)")
        return f"the local folder {local}"
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(teacher.model, "config.json"), str):
        return f"{teacher.model} (in the local Hugging Face cache)"
    raise UserError(
        f"teacher.model {teacher.model!r}: not the bundled model, not a folder, and not in the local "
        "Hugging Face cache (nothing is downloaded at run time)"
    )


def dry_run(config: GenerateConfig, run_dir: str | Path, *, force: bool = False) -> dict[str, Any]:
    """The checks' findings; the first failing check raises its `UserError`."""
    inputs = load_inputs(config)
    if config.teacher.backend == "openai":
        warnings = check_reachable(config.teacher.base_urls)
        teacher = f"openai server(s) answering at {', '.join(config.teacher.base_urls)}"
    else:
        warnings = []
        teacher = f"in-process vLLM, {_model_check(config.teacher)} (not started)"
    run = RunDir(run_dir)
    state = run.read_state() if run.path.is_dir() else None
    fingerprints = {"seeds": file_digest(inputs.seeds_path), "templates": inputs.templates.digests()}
    diffs = resume_differences(config, run, fingerprints, teacher_identity(config.teacher))
    if diffs and not force:
        shown = "\n  ".join(diffs)
        raise UserError(
            f"{run.path} holds a run made with a different configuration:\n  {shown}\n"
            "use another --run-dir, put the old settings back, or pass --force"
        )
    done = state.rounds_done if state is not None else 0
    where = f"continues after round {done} ({state.kept_total} kept)" if state and done else "a new run"
    return {
        "ok": True,
        "method": config.method,
        "seeds": {"path": str(inputs.seeds_path), "count": len(inputs.seeds)},
        "teacher": teacher,
        "run_dir": {"path": str(run.path), "rounds_committed": done, "what": where},
        "warnings": warnings,
    }
