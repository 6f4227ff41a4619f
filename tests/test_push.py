"""`selfinstruct export --format parquet` and `selfinstruct push` (issue 20, point 5), and the card for the Hub.

`push` runs as a user runs it, against a local stand-in for the Hub API (tests/hub_standin.py) that
`huggingface_hub` reaches through HF_ENDPOINT; nothing goes to the network. The card a push sends is
read back with huggingface_hub's own `DatasetCard`, and checked offline (`pipeline.publish.card`).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard

from pipeline.publish.card import card_problems
from pipeline.report.public import BUNDLED_HUB_ID, display_path, hub_model_id
from pipeline.run.export import PARQUET_FILES, export_run
from tests.hub_standin import TOKEN, HubStandIn
from tests.test_bad_inputs import assert_refused, selfinstruct, tree
from tests.test_report import write_run


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "runs" / "mine", tmp_path / "elsewhere" / "my_seeds.jsonl")


def hub_env(hub: HubStandIn, token: str | None = TOKEN) -> dict[str, str]:
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(Path(os.environ["HOME"]) / ".nohf")}
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def test_parquet_export_is_the_hub_layout(run_dir: Path, tmp_path: Path):
    info = export_run(run_dir, "parquet", tmp_path / "pq")
    files = sorted(
        p.relative_to(tmp_path / "pq").as_posix() for p in (tmp_path / "pq").rglob("*") if p.is_file()
    )
    assert files == sorted(PARQUET_FILES.values())
    rows = {split: pq.read_table(tmp_path / "pq" / path).to_pylist() for split, path in PARQUET_FILES.items()}
    assert len(rows["train"]) == info["train"] and len(rows["test"]) == info["test"]
    assert info["train"] + info["test"] == info["examples"]
    assert set(rows["train"][0]) == {"instruction", "input", "output", "task_id"}
    train_tasks = {r["task_id"] for r in rows["train"]}
    assert not train_tasks & {r["task_id"] for r in rows["test"]}  # split by task


def test_push_sends_dataset_card_and_report_to_the_repo(run_dir: Path, tmp_path: Path):
    with HubStandIn() as hub:
        result = selfinstruct(
            "push",
            str(run_dir),
            "me/my-data",
            "--private",
            "--license",
            "cc-by-4.0",
            "--json",
            "--quiet",
            cwd=tmp_path,
            env=hub_env(hub),
        )
        assert result.returncode == 0, result.stderr
        sent = json.loads(result.stdout)
        assert hub.created == [
            {"name": "my-data", "organization": "me", "visibility": "private", "type": "dataset"}
        ]
        files = hub.files["me/my-data"]
    assert sorted(files) == sorted(["README.md", "report.html", *PARQUET_FILES.values()])
    assert sent["repo_id"] == "me/my-data" and sent["files"] == sorted(files)
    rows = {s: pq.read_table(io.BytesIO(files[p])).num_rows for s, p in PARQUET_FILES.items()}
    assert rows["train"] + rows["test"] == sent["examples"] == 23
    card_text = files["README.md"].decode()
    assert hub.validated and hub.validated[0]["content"] == card_text  # the Hub's own check saw this card
    card = DatasetCard(card_text, ignore_metadata_errors=False)
    assert card.data.license == "cc-by-4.0"
    assert card.data.to_dict()["configs"][0]["data_files"] == [
        {"split": split, "path": path} for split, path in PARQUET_FILES.items()
    ]
    assert card_problems(card_text, files) == []
    assert 'load_dataset("me/my-data")' in card_text
    for page in (card_text, files["report.html"].decode()):
        assert str(tmp_path) not in page and "/home/" not in page  # no path of this machine


def test_push_checks_before_the_work_and_sends_nothing_on_a_bad_input(run_dir: Path, tmp_path: Path):
    before = tree(tmp_path)
    with HubStandIn() as hub:
        cases = [
            (["push", str(run_dir), "no-slash"], hub_env(hub), "USER/NAME"),
            (
                ["push", str(run_dir), "me/x", "--license", "freeware"],
                hub_env(hub),
                "not a Hugging Face Hub license",
            ),
            (["push", str(run_dir), "me/x"], hub_env(hub, token="wrong"), "does not take the token"),
            (
                ["push", str(run_dir), "me/x"],
                {**hub_env(hub), "HF_HUB_OFFLINE": "1"},
                "HF_HUB_OFFLINE=1 is set",
            ),
            (["push", str(tmp_path / "nope"), "me/x"], hub_env(hub), "no such run directory"),
        ]
        for args, env, needle in cases:
            assert_refused(selfinstruct(*args, cwd=tmp_path, env=env), needle)
        assert hub.created == [] and hub.files == {}
    dead = HubStandIn()
    dead.server_close()
    assert_refused(
        selfinstruct("push", str(run_dir), "me/x", cwd=tmp_path, env=hub_env(dead)), "cannot reach the Hub"
    )
    assert tree(tmp_path) == before


def test_the_card_names_models_by_hub_id_and_files_without_machine_paths(run_dir: Path, tmp_path: Path):
    assert selfinstruct("report", str(run_dir), "--quiet", cwd=tmp_path).returncode == 0
    card = (run_dir / "README.md").read_text()
    assert str(tmp_path) not in card and str(tmp_path) not in (run_dir / "report.html").read_text()
    assert "my_seeds.jsonl (sha256 " in card  # a seeds file outside the run: named by its digest
    config = yaml.safe_load(card.split("```yaml\n")[1].split("```")[0])
    assert config["seeds"].startswith("my_seeds.jsonl (sha256 ") and config["batch_size"] == 8
    assert "@inproceedings{wang-etal-2023-self-instruct" in card and "@misc{alpaca" in card
    assert card_problems(card) == []
    assert hub_model_id("bundled") == hub_model_id("smollm2-135m-instruct") == BUNDLED_HUB_ID
    assert display_path(run_dir / "seeds.jsonl", run_dir) == "seeds.jsonl"


def test_offline_card_check_refuses_what_the_hub_would():
    good = "---\nlicense: mit\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: a.parquet\n---\n"
    assert card_problems(good, ["a.parquet"]) == []
    assert any("not among the uploaded" in p for p in card_problems(good, ["b.parquet"]))
    assert any("not a Hub license" in p for p in card_problems(good.replace("mit", "my-own"), ["a.parquet"]))
    assert any("does not parse" in p for p in card_problems("---\n- a list\n---\n"))
    assert any("no configs" in p for p in card_problems("---\nlicense: mit\n---\n"))


def test_scrubbing_leaves_embedded_images_alone(tmp_path: Path):
    from pipeline.report.public import scrub_machine_paths

    home = str(Path.home())
    image = f'<img src="data:image/png;base64,AAAA{home}BBBB==">'
    text = f"<p>model at {home}/models/judge</p>{image}"
    assert scrub_machine_paths(text, tmp_path / "run") == f"<p>model at ~/models/judge</p>{image}"
