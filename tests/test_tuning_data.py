"""Tokenization with the loss on the response only, over-length handling, and loading the splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.errors import UserError
from pipeline.core.model import bundled_model_dir
from tuning.data import IGNORE_INDEX, encode_example, encode_examples, load_splits, split_examples

WORDS = [
    "apple", "river", "candle", "garden", "pencil", "window", "forest", "silver", "rocket", "basket",
    "mirror", "violin", "ladder", "button", "pepper", "marble", "tunnel", "copper", "lemon", "harbor",
]  # fmt: skip


def make_corpus() -> list[dict[str, str]]:
    """A small, learnable corpus of our own: three templated tasks over a word list."""
    out = []
    for i, word in enumerate(WORDS):
        out.append(
            {"instruction": "Write the given word in capital letters.", "input": word, "output": word.upper()}
        )
        out.append({"instruction": f"Spell the word {word} backwards.", "input": "", "output": word[::-1]})
        out.append(
            {
                "instruction": f"What is {i} plus {i + 3}?",
                "input": "",
                "output": f"{i} plus {i + 3} is {2 * i + 3}.",
            }
        )
    return out


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bundled_model_dir()))


@pytest.mark.parametrize("fmt", ["alpaca", "chat"])
def test_prompt_masked_response_and_eos_trained(tokenizer, fmt):
    example = {"instruction": "Write the given word in capital letters.", "input": "apple", "output": "APPLE"}
    enc = encode_example(example, tokenizer, fmt, 256)
    assert not enc.overlength
    assert len(enc.input_ids) == len(enc.labels)
    prompt_len = enc.labels.index(next(label for label in enc.labels if label != IGNORE_INDEX))
    assert prompt_len > 10
    assert all(label == IGNORE_INDEX for label in enc.labels[:prompt_len])
    # every token from the response on is trained, and it is exactly the input token
    assert enc.labels[prompt_len:] == enc.input_ids[prompt_len:]
    trained = tokenizer.decode(enc.input_ids[prompt_len:])
    assert trained.startswith("APPLE")
    assert tokenizer.eos_token_id in enc.labels[prompt_len:]
    prompt_text = tokenizer.decode(enc.input_ids[:prompt_len])
    assert "APPLE" not in prompt_text and "capital letters" in prompt_text
    if fmt == "alpaca":
        assert enc.labels[-1] == tokenizer.eos_token_id


def test_overlength_is_counted_then_dropped_or_truncated(tokenizer):
    short = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    long = {"instruction": "Repeat.", "input": "", "output": " ".join(["word"] * 120)}
    rows, stats = encode_examples([short, long], tokenizer, "alpaca", 64, "drop")
    assert (stats.kept, stats.overlength, stats.dropped, stats.truncated) == (1, 1, 1, 0)
    assert len(rows) == 1 and rows[0]["labels"][-1] == tokenizer.eos_token_id
    rows, stats = encode_examples([short, long], tokenizer, "alpaca", 64, "truncate")
    assert (stats.kept, stats.overlength, stats.dropped, stats.truncated) == (2, 1, 0, 1)
    assert len(rows[1]["input_ids"]) == 64
    assert stats.longest > 64


def test_split_is_seeded_and_disjoint():
    corpus = make_corpus()
    train, test = split_examples(corpus, 0.1, seed=3)
    again = split_examples(corpus, 0.1, seed=3)
    assert (train, test) == again
    assert len(test) == 6 and len(train) + len(test) == len(corpus)
    assert not {json.dumps(e) for e in test} & {json.dumps(e) for e in train}
    with pytest.raises(UserError):
        split_examples(corpus[:1], 0.1, 0)


def test_load_splits_alpaca_file_and_saved_dataset(tmp_path: Path):
    from datasets import Dataset, DatasetDict

    corpus = make_corpus()
    path = tmp_path / "data.json"
    path.write_text(json.dumps(corpus))
    train, test, how = load_splits(path, 0.1, 1)
    assert len(train) + len(test) == len(corpus) and "held out here" in how

    saved = tmp_path / "hf"
    DatasetDict(
        {"train": Dataset.from_list(corpus[:50]), "test": Dataset.from_list(corpus[50:])}
    ).save_to_disk(str(saved))
    train, test, how = load_splits(saved, 0.1, 1)
    assert train == corpus[:50] and test == corpus[50:]
    assert "export's test split" in how


def test_load_splits_errors(tmp_path: Path):
    with pytest.raises(UserError, match="no such"):
        load_splits(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(UserError, match="output"):
        load_splits(bad)


def test_max_steps_caps_the_epochs():
    from tuning.config import TrainConfig
    from tuning.train import planned_steps

    config = TrainConfig(batch_size=4, gradient_accumulation_steps=2, epochs=3)
    assert planned_steps(100, config) == 39  # ceil(100 / 8) = 13 per epoch
    assert planned_steps(100, config.model_copy(update={"max_steps": 20})) == 20
    assert planned_steps(100, config.model_copy(update={"max_steps": 500})) == 39
    assert planned_steps(3, config.model_copy(update={"epochs": 0.1})) == 1
