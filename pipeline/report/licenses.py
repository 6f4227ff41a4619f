"""The license identifiers the Hugging Face Hub accepts in a card's `license:` field.

The list is the Hub's own (docs/hub/repositories-licenses.md of huggingface/hub-docs), shipped here because
it is small, changes rarely and must be checked offline: `huggingface_hub` has no copy of it (the Hub
checks a card's YAML on upload). An identifier outside it is refused before the report is computed.
"""

from __future__ import annotations

import difflib

from pipeline.core.errors import UserError

HUB_LICENSES: frozenset[str] = frozenset(
    [
        "apache-2.0",
        "mit",
        "openrail",
        "bigscience-openrail-m",
        "creativeml-openrail-m",
        "bigscience-bloom-rail-1.0",
        "bigcode-openrail-m",
        "afl-3.0",
        "artistic-2.0",
        "bsl-1.0",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "c-uda",
        "cc",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "cc-by-nc-2.0",
        "cc-by-nc-3.0",
        "cc-by-nc-4.0",
        "cc-by-nd-4.0",
        "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0",
        "cc-by-nc-sa-2.0",
        "cc-by-nc-sa-3.0",
        "cc-by-nc-sa-4.0",
        "cdla-sharing-1.0",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "wtfpl",
        "ecl-2.0",
        "epl-1.0",
        "epl-2.0",
        "etalab-2.0",
        "eupl-1.1",
        "agpl-3.0",
        "gfdl",
        "gpl",
        "gpl-2.0",
        "gpl-3.0",
        "lgpl",
        "lgpl-2.1",
        "lgpl-3.0",
        "isc",
        "lppl-1.3c",
        "ms-pl",
        "mpl-2.0",
        "odc-by",
        "odbl",
        "openrail++",
        "osl-3.0",
        "postgresql",
        "ofl-1.1",
        "ncsa",
        "unlicense",
        "zlib",
        "pddl",
        "lgpl-lr",
        "deepfloyd-if-license",
        "llama2",
        "llama3",
        "llama3.1",
        "llama3.2",
        "llama3.3",
        "gemma",
        "unknown",
        "other",
    ]
)


def check_license(license_id: str, flag: str = "--license") -> str:
    """`license_id` if the Hub knows it (case-insensitive, returned in the Hub's spelling), else exit 2."""
    wanted = license_id.strip().lower()
    if wanted in HUB_LICENSES:
        return wanted
    close = difflib.get_close_matches(wanted, sorted(HUB_LICENSES), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"{flag} {license_id!r} is not a Hugging Face Hub license identifier; {hint}use one of the Hub's "
        "(apache-2.0, mit, cc-by-4.0, ... see https://huggingface.co/docs/hub/repositories-licenses), "
        "or 'other' for terms of your own"
    )
