"""Uploading a staged folder to a Hub dataset repo with `huggingface_hub`, errors said in one line.

One `create_repo` (exist_ok) and one `create_commit` of every file: the library's own upload path
(regular or LFS/Xet per file, as the Hub decides), its token lookup (`HF_TOKEN`, `hf auth login`) and
its endpoint (`HF_ENDPOINT`). Nothing here talks to the network by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.errors import UserError


def check_online() -> None:
    """`HF_HUB_OFFLINE` (the Makefile sets it) forbids every request: say so before any work."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise UserError(
            "push sends the dataset to the Hub, but HF_HUB_OFFLINE=1 is set (the Makefile sets it for its "
            "own targets); run it as `HF_HUB_OFFLINE=0 selfinstruct push ...`"
        )


def check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"REPO_ID {repo_id!r}: {exc}") from None
    if "/" not in repo_id:
        raise UserError(f"REPO_ID {repo_id!r}: write it as USER/NAME (or ORG/NAME)")
    return repo_id


def check_access() -> str:
    """Before the work: a token the Hub takes, and a Hub that answers. Returns the account's name."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    try:
        return str(HfApi().whoami().get("name", "?"))
    except LocalTokenNotFoundError:
        raise UserError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)"
        ) from None
    except HfHubHTTPError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"the Hub at {constants.ENDPOINT} does not take the token: {first}") from None
    except (OSError, _transport_error()) as exc:
        raise UserError(f"cannot reach the Hub at {constants.ENDPOINT}: {exc}") from None


def _transport_error() -> type[Exception]:
    """The HTTP library's own error class, whichever library this huggingface_hub is built on (its
    `HfHubHTTPError` derives from it), so that a refused connection is caught without naming it."""
    from huggingface_hub.errors import HfHubHTTPError

    return next(c for c in HfHubHTTPError.__mro__[1:] if c.__name__ == "HTTPError")


def upload(folder: Path, repo_id: str, *, private: bool, message: str) -> dict[str, Any]:
    """Create the dataset repo if needed and commit every file of `folder` to it; what was sent."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
        commit = api.create_commit(repo_id, operations, commit_message=message, repo_type="dataset")
    except LocalTokenNotFoundError:
        raise UserError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)"
        ) from None
    except HfHubHTTPError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"the Hub at {constants.ENDPOINT} refused the upload: {first}") from None
    except (OSError, _transport_error()) as exc:  # refused connection, DNS, TLS: no Hub reachable here
        raise UserError(f"cannot reach the Hub at {constants.ENDPOINT}: {exc}") from None
    return {"repo_id": repo_id, "url": str(url), "commit": commit.oid, "files": files, "private": private}
