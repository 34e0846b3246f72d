"""Fact collections on a real SQLite file: documents cut into chunks, found by FTS5 BM25 within
their collection, deleted with their index entries, and hybrid search fused by reciprocal rank
fusion (with a fake embedder whose vectors the test chooses)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from chinwag.errors import DocumentNotFound, InvalidParams
from chinwag.knowledge.collections import RRF_K, Collections, fuse
from chinwag.store import Store

MOON = "The moon orbits the earth once every twenty-seven days and shows phases."
BREAD = "Bread is baked from flour, water, yeast and salt in a hot oven."
TIDES = "Tides rise and fall twice a day, pulled by the moon and, less, by the sun."


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "chinwag.db") as s:
        yield s


@pytest.fixture
def collections(store: Store) -> Collections:
    return Collections(store)


class FakeEmbedder:
    """Vectors chosen by the test: each text gets the vector of the first key it contains,
    else a vector of its own; it records what it was asked to embed."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.asked: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.append(list(texts))
        rows = [next((v for key, v in self.vectors.items() if key in text), [0.0, 0.0, 0.0, 1.0])
                for text in texts]
        return np.asarray(rows, dtype=np.float32)


def test_bm25_finds_the_document_that_answers_among_several(collections: Collections) -> None:
    for title, text in (("moon", MOON), ("bread", BREAD), ("tides", TIDES)):
        collections.add("facts", title, text)
    hits = collections.search("facts", "How is bread baked?")
    assert [h.title for h in hits][:1] == ["bread"]
    assert hits[0].text == BREAD and hits[0].url is None and hits[0].seq == 0
    moon = collections.search("facts", "moon", k=4)
    assert {h.title for h in moon} == {"moon", "tides"}
    assert moon[0].score >= moon[1].score  # higher is better


def test_search_stays_within_its_collection(collections: Collections) -> None:
    collections.add("astronomy", "moon", MOON)
    collections.add("kitchen", "bread", BREAD)
    assert collections.search("kitchen", "moon orbits") == []
    assert [h.title for h in collections.search("astronomy", "moon orbits")] == ["moon"]


def test_k_limits_the_hits(collections: Collections) -> None:
    for i in range(6):
        collections.add("many", f"doc {i}", f"The moon, note {i}.")
    assert len(collections.search("many", "moon", k=2)) == 2
    with pytest.raises(InvalidParams):
        collections.search("many", "moon", k=0)


def test_a_long_document_is_cut_into_chunks_kept_in_order(collections: Collections) -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 100 for i in range(3)]
    added = collections.add("long", "book", "\n\n".join(paragraphs), url="https://x.test/b")
    assert added.chunks == 3
    every = collections.chunks("long")
    assert [(h.document_id, h.seq) for h in every] == [(added.id, 0), (added.id, 1),
                                                       (added.id, 2)]
    assert every[1].text.startswith("Paragraph 1") and every[0].url == "https://x.test/b"
    assert collections.documents("long") == [added]


def test_deleted_document_leaves_search_and_the_index(collections: Collections,
                                                      store: Store) -> None:
    moon = collections.add("facts", "moon", MOON)
    collections.add("facts", "tides", TIDES)
    collections.delete("facts", moon.id)
    assert [h.title for h in collections.search("facts", "moon")] == ["tides"]
    assert [d.title for d in collections.documents("facts")] == ["tides"]
    with store.transaction("check the index", write=False) as db:
        found = db.execute("SELECT rowid FROM knowledge_fts WHERE knowledge_fts MATCH 'orbits'")
        assert found.fetchall() == []
    with store.transaction("check the index") as db:  # raises when FTS5 and the chunks differ
        db.execute("INSERT INTO knowledge_fts (knowledge_fts, rank) VALUES ('integrity-check', 1)")


def test_deleting_an_unknown_document_is_document_not_found(collections: Collections) -> None:
    moon = collections.add("facts", "moon", MOON)
    with pytest.raises(DocumentNotFound):
        collections.delete("facts", moon.id + 1)
    with pytest.raises(DocumentNotFound):  # the id exists, but in another collection
        collections.delete("other", moon.id)


def test_list_collections_counts_documents_chunks_and_vectors(collections: Collections) -> None:
    collections.add("b", "moon", MOON)
    collections.add("b", "bread", BREAD, embedder=FakeEmbedder({}))
    collections.add("a", "tides", TIDES)
    found = [(c.name, c.documents, c.chunks, c.embedded)
             for c in collections.list_collections()]
    assert found == [("a", 1, 1, False), ("b", 2, 2, True)]


def test_question_with_no_words_finds_nothing(collections: Collections) -> None:
    collections.add("facts", "moon", MOON)
    assert collections.search("facts", "?! ...") == []
    assert collections.search("facts", "") == []


def test_unknown_collection_is_empty_not_an_error(collections: Collections) -> None:
    assert collections.search("nothing-here", "moon") == []
    assert collections.chunks("nothing-here") == []
    assert collections.documents("nothing-here") == []


def test_fts_syntax_in_a_question_is_read_as_words(collections: Collections) -> None:
    collections.add("facts", "moon", MOON)
    assert [h.title for h in collections.search("facts", 'moon AND "NEAR( * orbits:')] \
        == ["moon"]


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "semi;colon", "x" * 65, "ü"])
def test_invalid_collection_name_is_invalid_params(collections: Collections, name: str) -> None:
    with pytest.raises(InvalidParams) as e:
        collections.add(name, "t", "text")
    assert e.value.param == "collection"
    with pytest.raises(InvalidParams):
        collections.search(name, "text")


def test_document_without_words_or_title_is_refused(collections: Collections) -> None:
    with pytest.raises(InvalidParams) as e:
        collections.add("facts", "empty", "  \n\n ")
    assert e.value.param == "text"
    with pytest.raises(InvalidParams) as e:
        collections.add("facts", " ", MOON)
    assert e.value.param == "title"


def test_fusion_reorders_what_bm25_alone_ranks(collections: Collections) -> None:
    """BM25 ranks A above B (A says "moon" twice in fewer words); the embedder puts B nearest
    the question, then C (no shared word), then A. Fused: B (1/61 + 1/62) > A (1/61 + 1/63)
    > C (1/62)."""
    fake = FakeEmbedder({"quiet sea": [1.0, 0.0, 0.0, 0.0], "lunar": [0.8, 0.6, 0.0, 0.0],
                         "craters": [0.0, 1.0, 0.0, 0.0], "Where": [1.0, 0.1, 0.0, 0.0]})
    collections.add("sky", "A", "moon moon craters and dust", embedder=fake)
    collections.add("sky", "B", "a moon over a quiet sea at night with many stars",
                    embedder=fake)
    collections.add("sky", "C", "lunar tides", embedder=fake)
    question = "Where is the moon?"
    assert [h.title for h in collections.search("sky", question)] == ["A", "B"]  # BM25 alone
    fused = collections.search("sky", question, embedder=fake)
    assert [h.title for h in fused] == ["B", "A", "C"]
    assert fused[0].score == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert fused[1].score == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 3))
    assert fused[2].score == pytest.approx(1 / (RRF_K + 2))
    assert fake.asked[-1] == [question]


def test_collection_without_vectors_never_runs_the_embedder(collections: Collections) -> None:
    collections.add("plain", "moon", MOON)
    fake = FakeEmbedder({})
    assert [h.title for h in collections.search("plain", "moon", embedder=fake)] == ["moon"]
    assert fake.asked == []


def test_vectors_read_again_after_the_collection_changes(collections: Collections) -> None:
    """The in-memory copy of a collection's vectors follows adds and deletes (here by another
    ``Collections`` on the same file, as another process would)."""
    fake = FakeEmbedder({"moon": [1.0, 0.0, 0.0, 0.0], "flour": [0.0, 1.0, 0.0, 0.0],
                         "dough": [0.0, 0.9, 0.1, 0.0]})
    other = Collections(collections.store)
    moon = collections.add("mix", "moon", MOON, embedder=fake)
    assert [h.title for h in collections.search("mix", "dough", embedder=fake)] == ["moon"]
    other.add("mix", "bread", BREAD, embedder=fake)
    assert [h.title for h in collections.search("mix", "dough", embedder=fake)] \
        == ["bread", "moon"]
    other.delete("mix", moon.id)
    assert [h.title for h in collections.search("mix", "dough", embedder=fake)] == ["bread"]


def test_embedding_a_collection_later_makes_its_search_hybrid(collections: Collections) -> None:
    """``embed`` gives vectors to chunks added without; a search that had cached the
    collection's vectors sees the new ones."""
    fake = FakeEmbedder({"moon": [1.0, 0.0, 0.0, 0.0], "flour": [0.0, 1.0, 0.0, 0.0],
                         "dough": [0.0, 0.9, 0.1, 0.0]})
    collections.add("mix", "moon", MOON, embedder=fake)
    bread = collections.add("mix", "bread", BREAD)
    assert [h.title for h in collections.search("mix", "dough", embedder=fake)] == ["moon"]
    assert collections.embed("mix", fake) == 1
    assert collections.embed("mix", fake) == 0  # nothing left without a vector
    assert [h.title for h in collections.search("mix", "dough", embedder=fake)] \
        == ["bread", "moon"]
    assert [(h.document_id, h.seq, h.text) for h in collections.chunks("mix")][1] \
        == (bread.id, 0, BREAD)
    assert collections.documents("mix")[1].embedded
    assert [h.title for h in collections.search("mix", "baked")] == ["bread"]  # still indexed


def test_fuse_scores_each_ranking_by_reciprocal_rank() -> None:
    assert fuse([[1, 2], [2, 3]]) == [(2, pytest.approx(1 / 62 + 1 / 61)),
                                      (1, pytest.approx(1 / 61)), (3, pytest.approx(1 / 62))]
    assert fuse([]) == []
