"""Merge a LoRA adapter into its base model and check the result speaks exactly like training did.

The merged folder is an ordinary Hugging Face model (safetensors in the base model's dtype) that
vLLM or transformers load without peft. Its tokenizer is the one training used, saved next to the
adapter, and the check compares chat template, EOS and every special token after reloading it
from disk, because a student served with a different template or EOS answers differently or never
stops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuning.outputs import META_FILE, save_dir_atomic


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What must not change between training and serving."""
    return {
        "chat_template": tokenizer.chat_template,
        "eos_token": tokenizer.eos_token,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token": tokenizer.bos_token,
        "pad_token": tokenizer.pad_token,
        "special_tokens": sorted(tokenizer.all_special_tokens),
        "special_ids": sorted(tokenizer.all_special_ids),
        "vocab_size": len(tokenizer),
    }


def check_merged(merged_dir: Path, training_tokenizer: Any) -> None:
    """Reload the merged folder's tokenizer and config; raise if anything differs from training."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    reloaded = AutoTokenizer.from_pretrained(str(merged_dir))
    want, got = tokenizer_identity(training_tokenizer), tokenizer_identity(reloaded)
    diff = [key for key in want if want[key] != got[key]]
    config = AutoConfig.from_pretrained(str(merged_dir))
    eos = training_tokenizer.eos_token_id
    config_eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    if eos not in config_eos:
        diff.append(f"config.eos_token_id {config.eos_token_id} (want {eos})")
    generation = GenerationConfig.from_pretrained(str(merged_dir))
    gen_eos = (
        generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    )
    if eos not in gen_eos:
        diff.append(f"generation_config.eos_token_id {generation.eos_token_id} (want {eos})")
    if diff:
        raise RuntimeError(f"{merged_dir}: differs from the training tokenizer/config in: {', '.join(diff)}")


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Write base + adapter as one model folder at `out_dir` (atomically) and check it; return the path."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    meta = json.loads((adapter_dir / META_FILE).read_text(encoding="utf-8"))
    base = base_model or meta["base_model"]
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    saved_dtype = getattr(AutoConfig.from_pretrained(base), "dtype", None) or torch.float32
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype)
    # Merge in float32 so the small LoRA update is added at full precision, then store in the base's dtype.
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged = merged.to(saved_dtype)
    merged.config.eos_token_id = tokenizer.eos_token_id
    merged.generation_config.eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None:
        merged.generation_config.pad_token_id = tokenizer.pad_token_id

    def write(tmp: Path) -> None:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(json.dumps({**meta, "merged_from": str(adapter_dir)}, indent=2) + "\n")
        check_merged(tmp, tokenizer)

    save_dir_atomic(out_dir, write)
    return out_dir
