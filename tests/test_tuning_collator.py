"""Our encoded rows through the data collator of the SFTTrainer that `train` builds.

Older TRL collators rebuild labels from input_ids: TRL 0.16-0.18 thereby train on the prompt, and TRL
<= 0.15 (transformers' collator) also masks every pad token, which with pad == EOS (SmolLM2) masks
every EOS, so the student never learns to stop. TRL >= 0.19 keeps our labels; this test fails on any
TRL that does not (checked: 0.18.2 fails, 0.19.0 passes).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tuning_data import make_corpus

from pipeline.core.model import bundled_model_dir
from tuning.config import TrainConfig
from tuning.data import IGNORE_INDEX, common_prefix_length, encode_examples
from tuning.formats import render_example, render_prompt
from tuning.train import build_trainer, load_tokenizer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["alpaca", "chat"])
def test_trainer_collator_masks_prompts_and_trains_each_eos(fmt: str, tmp_path: Path):
    base = str(bundled_model_dir())
    tokenizer = load_tokenizer(base, fmt)
    eos = tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos  # the case where masking pad tokens would mask EOS
    corpus = make_corpus()
    # Answers of different lengths in one batch, so the shorter ones are padded with EOS.
    examples = [corpus[0], corpus[1], corpus[2], corpus[29], corpus[30]]
    rows, stats = encode_examples(examples, tokenizer, fmt, 256)
    assert stats.kept == len(examples)
    config = TrainConfig(prompt_format=fmt, batch_size=len(rows), max_steps=1, torch_threads=1)
    trainer = build_trainer(base, tokenizer, rows, rows[:1], config, tmp_path, [])

    prepared = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(prepared)
    input_ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    lengths = [len(row["input_ids"]) for row in rows]
    assert min(lengths) < max(lengths) == len(input_ids[0])

    for i, example in enumerate(examples):
        n = lengths[i]
        assert input_ids[i][:n] == rows[i]["input_ids"]
        prompt = render_prompt(fmt, tokenizer, example["instruction"], example["input"])
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        start = common_prefix_length(prompt_ids, input_ids[i])
        assert start >= len(prompt_ids) - 1 and start > 10
        assert all(label == IGNORE_INDEX for label in labels[i][:start]), f"prompt trained in row {i}"
        # Every answer token is trained, up to and including the EOS that ends the answer.
        end = input_ids[i].index(eos, start)
        assert labels[i][start : end + 1] == input_ids[i][start : end + 1], f"answer masked in row {i}"
        assert labels[i][end] == eos
        _, completion = render_example(
            fmt, tokenizer, example["instruction"], example["input"], example["output"]
        )
        assert tokenizer.decode(labels[i][start:n]) == completion
        # Padding (EOS ids too) is never trained.
        assert all(token == eos for token in input_ids[i][n:])
        assert all(label == IGNORE_INDEX for label in labels[i][n:])
        if fmt == "alpaca":
            assert end == n - 1
