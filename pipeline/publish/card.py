"""The dataset card checked offline before anything is sent: what the Hub would refuse, refused here.

`huggingface_hub.DatasetCard` parses the YAML header into its `DatasetCardData` (its own validation,
which raises on a malformed header); on top, the fields the Hub checks on upload that the library does
not: the license among the Hub's identifiers, the size bucket among the Hub's, and `configs:` naming
files that are in the upload.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pipeline.core.errors import UserError
from pipeline.report.card import SIZE_BUCKETS
from pipeline.report.licenses import HUB_LICENSES

SIZE_NAMES = {name for _, name in SIZE_BUCKETS} | {"n>1B"}


def card_problems(text: str, files: Collection[str] = ()) -> list[str]:
    """Every problem of a README.md as a dataset card; empty when the Hub would take it."""
    from huggingface_hub import DatasetCard

    try:
        card = DatasetCard(text, ignore_metadata_errors=False)
    except (ValueError, TypeError) as exc:
        return [f"the card's metadata does not parse: {exc}"]
    data: dict[str, Any] = card.data.to_dict()
    problems = []
    if data.get("license") not in HUB_LICENSES:
        problems.append(f"license {data.get('license')!r} is not a Hub license identifier")
    if data.get("license") == "other" and not data.get("license_name"):
        problems.append("license 'other' needs a license_name")
    for size in data.get("size_categories") or []:
        if size not in SIZE_NAMES:
            problems.append(f"size category {size!r} is not one of the Hub's")
    configs = data.get("configs") or []
    if not configs:
        problems.append("no configs: the dataset viewer would not know which files hold the data")
    for config in configs:
        for entry in config.get("data_files") or []:
            path = entry.get("path") if isinstance(entry, dict) else None
            if not path:
                problems.append(f"config {config.get('config_name')!r}: a data_files entry without a path")
            elif files and path not in files:
                problems.append(
                    f"config {config.get('config_name')!r}: {path} is not among the uploaded files"
                )
    return problems


def check_card(text: str, files: Collection[str] = ()) -> None:
    problems = card_problems(text, files)
    if problems:
        raise UserError("the dataset card would not pass the Hub's checks: " + "; ".join(problems))
