"""The embedding model (PLACEHOLDER: being written)."""

from __future__ import annotations

MODEL_ID = "all-minilm-l6-v2"


class Embedder:
    """Placeholder."""
