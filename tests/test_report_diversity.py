"""The report's diversity map on a constructed run with known topics, rendered in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from curate_runs import SMALL_TOPICS, write_topic_run
from PIL import Image
from test_report import CHROMIUM, _Page, chromium

from pipeline.cli import main


@pytest.fixture(scope="module")
def topic_report(tmp_path_factory) -> tuple[Path, dict[str, str], dict]:
    root = tmp_path_factory.mktemp("diversity")
    topics = write_topic_run(root / "run", root / "seeds.jsonl")
    result = CliRunner().invoke(main, ["report", str(root / "run"), "--quiet", "--json", "--verbs", "simple"])
    assert result.exit_code == 0, result.output
    return root / "run", topics, json.loads(result.stdout)["diversity"]


def test_clusters_name_the_topics_and_measure_the_skew(topic_report):
    run_dir, topics, div = topic_report
    assert div["tasks"] == 100 and div["seeds"] == 1 and div["k"] == 7
    sizes = [c["size"] for c in div["clusters"]]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 100
    assert div["top10_clusters"] == 1 and div["top10_share"] == pytest.approx(sizes[0] / 100)
    tasks = {
        json.loads(line)["instruction"] for line in (run_dir / "machine_tasks.jsonl").read_text().splitlines()
    }
    assert all(c["name"] in tasks for c in div["clusters"])
    # the math topic is one cluster of its own, named by a math task, its pair its leading word
    math = [c for c in div["clusters"] if c["name"].startswith("Solve the equation")]
    assert len(math) == 1 and math[0]["size"] == len(SMALL_TOPICS["math"]) and math[0]["pair"] == "solve"
    assert len(div["points"]["x"]) == 100 and len(div["seed_points"]["x"]) == 1
    assert sum(c["seeds"] for c in div["clusters"]) == 1
    assert div["verdict_source"] is None and set(div["points"]["verdict"]) == {None}
    assert 0.0 <= div["beyond_seeds"] <= 1.0 and div["clusters_without_seeds"] == div["k"] - 1


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: apt-get install -y chromium"
)
def test_diversity_map_renders_in_chromium(topic_report, tmp_path):
    run_dir, _, div = topic_report
    url = (run_dir / "report.html").resolve().as_uri()
    page = _Page()
    page.feed(chromium(url, tmp_path / "profile", "--dump-dom").stdout)
    section = page.sections["diversity"]
    assert "100 kept instructions in 7 clusters" in section["text"]
    assert section["rows"] == 1 + div["k"]
    assert len(section["imgs"]) == 2
    with Image.open(io.BytesIO(base64.b64decode(section["imgs"][0].split(",", 1)[1]))) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    # a scatter in many cluster colours, not an empty axis
    assert colours is not None and len(colours) > 100
    shot = tmp_path / "page.png"
    chromium(url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,9000")
    with Image.open(shot) as image:
        assert image.size == (1280, 9000)
        assert len(image.convert("RGB").resize((320, 2250)).getcolors(maxcolors=1 << 16) or []) > 200
