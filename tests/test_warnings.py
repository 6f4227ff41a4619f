"""Our own warnings are caught and shown our way; everyone else's (vLLM's, the libraries') still reach
the user. Checked on the helper and on the two commands that catch warnings: `generate` and `dedup`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.core.warncapture import PipelineWarning, capture_warnings
from pipeline.generate.config import GenerateConfig
from pipeline.generate.protocol import run_generation
from pipeline.quality.dedup import DedupDisabledWarning
from pipeline.run.schemas import Instance, SeedTask, TeacherIdentity
from pipeline.teachers.base import Completion, Deliver, RequestQueue, Teacher
from pipeline.teachers.config import TeacherConfig


class OursA(PipelineWarning):
    pass


def test_only_the_given_categories_are_recorded_the_rest_go_on_as_usual():
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("default")
        with capture_warnings(OursA) as caught:
            for _ in range(2):
                warnings.warn(OursA("ours, each time"), stacklevel=1)
            warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
            warnings.warn("an engine's notice", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["ours, each time"] * 2
    assert {(w.category, str(w.message)) for w in outside} == {
        (DeprecationWarning, "a library's deprecation"),
        (UserWarning, "an engine's notice"),
    }


def test_the_users_own_filters_still_apply_to_foreign_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(UserWarning, match="engine"), capture_warnings(OursA):
            warnings.warn("an engine's notice", UserWarning, stacklevel=1)
        with capture_warnings(OursA) as caught:  # ours are recorded, not raised, even under -W error
            warnings.warn(OursA("ours"), stacklevel=1)
    assert len(caught) == 1


class WarningTeacher(Teacher):
    """A teacher whose engine warns, as vLLM does, and answers every request with one fixed text."""

    def __init__(self) -> None:
        super().__init__(TeacherIdentity(backend="vllm", model="warning-teacher", fingerprint="x"))

    def stream(self, queue: RequestQueue, deliver: Deliver) -> None:
        warnings.warn("the engine says: sampling parameter rounded", UserWarning, stacklevel=1)
        while taken := queue.take():  # a delivery may add follow-up requests: take until none is left
            for index, request in taken:
                reply = Completion(
                    texts=["Describe a harbor at dawn.\n10. List three uses of salt."] * request.params.n,
                    finish_reasons=["stop"] * request.params.n,
                    prompt_tokens=10,
                    completion_tokens=10,
                    backend="vllm",
                    model="warning-teacher",
                )
                deliver([(index, reply)])


def test_generate_reports_ours_and_lets_the_engines_warnings_through(tmp_path: Path):
    seeds = tmp_path / "seeds.jsonl"
    texts = ["写一首关于秋天的诗"] + [
        f"{verb} {topic}."
        for verb in ("Explain", "Summarize", "Describe")
        for topic in ("how tides work", "the water cycle", "why leaves fall")
    ]
    seeds.write_text(
        "".join(
            SeedTask(
                id=f"s{k}",
                name=f"s{k}",
                instruction=t,
                instances=[Instance(input="", output="x")],
                is_classification=False,
            ).model_dump_json()
            + "\n"
            for k, t in enumerate(texts)
        )
    )
    config = GenerateConfig(
        seeds=str(seeds),
        rounds=1,
        batch_size=2,
        decoding={"constrained": "off"},
        teacher=TeacherConfig(backend="vllm", model="warning-teacher", cache=False),
    )
    reported: list[str] = []
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        run_generation(config, tmp_path / "run", teacher=WarningTeacher(), on_warning=reported.append)
    assert len(reported) == 1 and "写一首关于秋天的诗" in reported[0]  # ours, handed to the command
    foreign = [w for w in outside if not issubclass(w.category, PipelineWarning)]
    assert "the engine says: sampling parameter rounded" in {str(w.message) for w in foreign}
    assert not [w for w in outside if issubclass(w.category, PipelineWarning)]


def test_dedup_prints_ours_and_lets_a_librarys_warning_through(tmp_path: Path, monkeypatch):
    import rich.progress

    start = rich.progress.Progress.start

    def warning_start(self):  # a library that warns while our command runs
        warnings.warn("rich says: terminal too narrow", UserWarning, stacklevel=1)
        start(self)

    monkeypatch.setattr(rich.progress.Progress, "start", warning_start)
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"instruction": t}, ensure_ascii=False) + "\n" for t in ["写一首诗", "写一首诗。"])
    )
    with pytest.warns(UserWarning) as record:
        result = CliRunner().invoke(main, ["dedup", str(src), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    assert "warning: '写一首诗' has no words" in " ".join(result.stderr.split())  # ours, printed our way
    assert [str(w.message) for w in record] == ["rich says: terminal too narrow"]
    assert not any(issubclass(w.category, DedupDisabledWarning) for w in record)
