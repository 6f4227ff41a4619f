"""`selfinstruct dedup` end to end through the real CLI group: output, rejects, and every error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.quality.rouge import rouge_l

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "self_instruct_seed_tasks.jsonl"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run(*args: str):
    return CliRunner().invoke(main, ["dedup", *args])


ROWS = [
    {"id": 1, "instruction": "List three benefits of regular exercise for adults.", "extra": [1, 2]},
    {"id": 2, "instruction": "List three benefits of regular exercise for older adults."},
    {"id": 3, "instruction": "Explain how vaccines train the immune system."},
    {"id": 4, "instruction": "Explain how vaccines train the human immune system."},
    {"id": 5, "instruction": "Write a haiku about a quiet harbor at dawn."},
]


def test_keeps_first_occurrences_and_writes_rejects(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out, rejected = tmp_path / "out.jsonl", tmp_path / "rejected.jsonl"
    result = run(str(src), "-o", str(out), "--rejected", str(rejected))
    assert result.exit_code == 0, result.output
    assert "kept 3 of 5 records" in result.stdout
    kept = read_jsonl(out)
    assert [row["id"] for row in kept] == [1, 3, 5]
    for row, original in zip(kept, [ROWS[0], ROWS[2], ROWS[4]], strict=True):
        assert {k: v for k, v in row.items() if k not in ("most_similar", "avg_similarity")} == original
    assert kept[0]["most_similar"] == {} and kept[0]["avg_similarity"] == 0.0
    pool = [ROWS[0]["instruction"], ROWS[2]["instruction"]]
    scores = [rouge_l(ROWS[4]["instruction"], text) for text in pool]
    order = sorted(range(2), key=lambda i: (-scores[i], i))
    assert kept[2]["most_similar"] == {pool[i]: scores[i] for i in order}
    assert kept[2]["avg_similarity"] == pytest.approx(sum(scores) / 2)
    dropped = read_jsonl(rejected)
    assert [row["id"] for row in dropped] == [2, 4]
    assert dropped[0]["reasons"] == ["rouge_l_duplicate"]
    assert dropped[0]["max_score"] == rouge_l(ROWS[1]["instruction"], ROWS[0]["instruction"])
    assert dropped[0]["most_similar"] == {ROWS[0]["instruction"]: dropped[0]["max_score"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl", "rejected.jsonl"]


def test_against_seeds_threshold_field_and_json(tmp_path: Path) -> None:
    seeds = [json.loads(line)["instruction"] for line in SEEDS.read_text(encoding="utf-8").splitlines()][:20]
    rows = [{"text": seeds[3]}, {"text": "Describe the water cycle to a ten-year-old child."}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = run(str(src), "-o", str(out), "--field", "text", "--against", str(SEEDS), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["records"] == 2 and summary["kept"] == 1 and summary["rejected"] == 1
    assert summary["against"] == len(SEEDS.read_text(encoding="utf-8").splitlines())
    assert summary["pairs_scored"] + summary["pairs_pruned"] == summary["against"] * 2
    assert read_jsonl(out)[0]["text"] == rows[1]["text"]
    # threshold 1.0 keeps even an exact copy; --no-stats adds no fields
    result = run(
        str(src), "-o", str(out), "--field", "text", "--against", str(SEEDS), "--threshold", "1", "--no-stats"
    )
    assert result.exit_code == 0, result.output
    assert read_jsonl(out) == rows


def test_chinese_warns_and_unicode_tokenizer_dedups(tmp_path: Path) -> None:
    rows = [{"instruction": "写一首关于秋天的诗"}, {"instruction": "写一首关于秋天的诗。"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = run(str(src), "-o", str(out))
    assert result.exit_code == 0
    assert "--tokenizer unicode" in result.stderr
    assert len(read_jsonl(out)) == 2
    result = run(str(src), "-o", str(out), "--tokenizer", "unicode")
    assert result.exit_code == 0
    assert "warning" not in result.stderr
    assert len(read_jsonl(out)) == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"instruction": "fine text here"}\n{not json\n', ["line 2: bad JSON"]),
        (
            '{"instruction": "fine text here"}\n{"input": "x"}\n',
            ['line 2, field "instruction": missing field'],
        ),
        ('{"instruction": 7}\n', ['line 1, field "instruction": expected a string, got int']),
        ('["a list"]\n', ["line 1: expected a JSON object, got list"]),
        (
            '{"instruction": null}\n\n{"instruction": "ok"}\n{"other": 1}\n',
            ['line 1, field "instruction": expected a string', 'line 4, field "instruction": missing field'],
        ),
    ],
)
def test_bad_input_exits_2_with_line_and_field(tmp_path: Path, content: str, expected: list[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run(str(src), "-o", str(out))
    assert result.exit_code == 2
    assert str(src) in result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_files_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run(str(tmp_path / "nope.jsonl"), "-o", str(out))
    assert result.exit_code == 2
    assert "nope.jsonl: no such file" in result.stderr
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    result = run(str(src), "-o", str(out), "--against", str(tmp_path / "seeds.jsonl"))
    assert result.exit_code == 2
    assert "seeds.jsonl: no such file" in result.stderr
    bad_against = write_jsonl(tmp_path / "against.jsonl", [{"name": "no text field"}])
    result = run(str(src), "-o", str(out), "--against", str(bad_against))
    assert result.exit_code == 2
    assert 'line 1, field "instruction": missing field' in result.stderr
    assert not out.exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    assert run(str(src)).exit_code == 2  # -o is required
    assert run(str(src), "-o", str(tmp_path / "o.jsonl"), "--threshold", "1.5").exit_code == 2
    assert run(str(src), "-o", str(tmp_path / "o.jsonl"), "--tokenizer", "bpe").exit_code == 2


def test_past_stats_sample_the_mean_is_sampled_and_the_record_says_so(tmp_path: Path) -> None:
    rows = [
        {"id": k, "instruction": f"Write {k} short lines about topic number {k} and why it matters."}
        for k in range(6)
    ]
    rows += [{"id": 9, "instruction": "Name three rivers of Europe and why they matter."}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = run(str(src), "-o", str(out), "--stats-sample", "3", "--threshold", "0.99")
    assert result.exit_code == 0, result.output
    kept = read_jsonl(out)
    assert len(kept) == len(rows)
    for k, row in enumerate(kept):
        if k <= 3:  # compared with at most 3 kept texts: the exact mean
            assert "avg_similarity_sample" not in row and "avg_similarity_se" not in row
        else:
            assert row["avg_similarity_sample"] == 3 and row["avg_similarity_se"] >= 0.0
            assert 0.0 < row["avg_similarity"] < 1.0
