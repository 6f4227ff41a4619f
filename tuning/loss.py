"""Held-out loss with transformers: mean cross-entropy per response token, prompt masked.

The same encoding as training (`tuning.data.encode_examples`), so base model and student are
measured on exactly the same tokens. Token-weighted: the sum of per-token losses over all examples
divided by the number of response tokens (the trainer's eval loss averages per batch instead, so
the two can differ slightly).
"""

from __future__ import annotations

from typing import Any

from tuning.data import IGNORE_INDEX


def heldout_loss(model: Any, rows: list[dict[str, list[int]]], pad_id: int, batch_size: int = 8) -> float:
    """Mean per-token loss of `model` on pre-encoded rows (input_ids + labels)."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            width = max(len(r["input_ids"]) for r in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, r in enumerate(batch):
                n = len(r["input_ids"])
                ids[i, :n] = torch.tensor(r["input_ids"])
                labels[i, :n] = torch.tensor(r["labels"])
                mask[i, :n] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))
            shift_labels = labels[:, 1:].reshape(-1)
            losses = torch.nn.functional.cross_entropy(
                shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            total += float(losses)
            count += int((shift_labels != IGNORE_INDEX).sum())
    if count == 0:
        raise ValueError("no response tokens to score")
    return total / count
