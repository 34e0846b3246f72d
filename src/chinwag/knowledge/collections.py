"""Fact collections: named sets of documents in ``chinwag.db``, cut into chunks and searched.

Tables (``store/database.py``, schema version 2): ``knowledge_documents`` (a document's title,
URL, whole text), ``knowledge_chunks`` (its chunks, ``split_chunks``: at most 120 words each,
each with an optional float32 vector) and ``knowledge_fts``, the FTS5 index over the chunks'
text that triggers keep in step (a deleted document's chunks leave the index with it).

Search:

- by words: FTS5's ``bm25(knowledge_fts)`` (Okapi BM25, k1 = 1.2, b = 0.75, ``porter
  unicode61`` tokens), every word of the question quoted and OR-ed (``fts_query``). The
  inverse document frequencies are those of every collection together (one FTS5 table).
  A hit's score is ``-bm25``: higher is better.
- hybrid, when an embedder is given and the collection has vectors: the chunks are also ranked
  by cosine similarity between the question's vector and theirs (numpy over the whole
  collection: measured 8.5 ms for 50,000 x 384), and the two rankings are fused by
  reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009): a chunk scores
  ``sum over rankings of 1 / (60 + rank)`` (rank from 1; a ranking it is not in adds
  nothing). Each ranking contributes its best ``max(4 k, 50)`` chunks.

A collection's vectors are kept in memory between searches (the few most recent
collections; reading 50,000 from SQLite takes about 0.3 s), and read again when its chunks
changed: ``count(*)`` and ``max(id)`` of its chunks, from an index, tell, because chunk ids are
never reused (``AUTOINCREMENT``) and a row's vector is never updated in place (``embed`` gives
a chunk its vector by replacing its row with one under a new id). Several processes may share
the file.

A collection exists while it has documents; names are 1 to 64 of ``A-Z a-z 0-9 _ . -``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from chinwag.errors import DocumentNotFound, InvalidParams
from chinwag.knowledge.chunks import fts_query, split_chunks
from chinwag.store import Store

RRF_K = 60
"""The constant of reciprocal rank fusion (Cormack et al. 2009 found 60 near best)."""

MIN_CANDIDATES = 50
"""Chunks each ranking contributes to the fusion, at least (4 k when that is more)."""

CACHED_COLLECTIONS = 4
"""Collections whose vectors stay in memory between searches (50,000 chunks: 77 MB)."""

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_HIT = """
    SELECT c.id, c.document_id, c.seq, d.title, d.url, c.text
    FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id
"""
_DOCUMENT = """
    SELECT d.id, d.collection, d.title, d.url, d.created_at,
           (SELECT COUNT(*) FROM knowledge_chunks c WHERE c.document_id = d.id),
           EXISTS (SELECT 1 FROM knowledge_chunks c
                   WHERE c.document_id = d.id AND c.vector IS NOT NULL)
    FROM knowledge_documents d
"""


class Embeds(Protocol):
    """What search and ``add`` need of an embedding model (``embeddings.Embedder``, or a
    fake in tests)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 vectors of shape ``(len(texts), d)``."""
        ...


@dataclass(frozen=True)
class Hit:
    """A chunk of a collection, as search (or ``chunks``) gives it.

    Attributes:
        document_id: the document it belongs to.
        chunk_id: unique across the database.
        seq: its place in its document: 0, 1, 2...
        title: the document's title.
        url: the document's URL, None for text added directly.
        text: the chunk's text.
        score: higher is better: ``-bm25`` for a search by words, the reciprocal rank fusion
            score (at most 2 / 61) for a hybrid search, 0.0 from ``chunks``.
    """

    document_id: int
    chunk_id: int
    seq: int
    title: str
    url: str | None
    text: str
    score: float


@dataclass(frozen=True)
class DocumentInfo:
    """A document of a collection, without its text.

    Attributes:
        id: unique across the database.
        collection: the collection's name.
        title: its title.
        url: where it was fetched from, None for text added directly.
        chunks: how many chunks it was cut into.
        embedded: whether its chunks have vectors.
        created_at: when it was added, unix seconds.
    """

    id: int
    collection: str
    title: str
    url: str | None
    chunks: int
    embedded: bool
    created_at: float


@dataclass(frozen=True)
class CollectionInfo:
    """A collection and its size.

    Attributes:
        name: the collection's name.
        documents: documents in it.
        chunks: chunks in it.
        embedded: whether any of its chunks has a vector (its searches can be hybrid).
    """

    name: str
    documents: int
    chunks: int
    embedded: bool


@dataclass(frozen=True)
class _Vectors:
    """A collection's vectors as of ``stamp``: chunk ids ``(n,)`` and unit rows ``(n, d)``."""

    stamp: tuple[int, int]
    ids: np.ndarray
    matrix: np.ndarray


def check_name(collection: str) -> str:
    """``collection`` when it is a valid collection name (1 to 64 of ``A-Z a-z 0-9 _ . -``).

    Raises:
        InvalidParams: it is not (param ``collection``).
    """
    if not _NAME.fullmatch(collection):
        raise InvalidParams(f"invalid collection name {collection!r}: use 1 to 64 letters, "
                            "digits, '_', '.' or '-'", param="collection")
    return collection


class Collections:
    """The fact collections of one database; safe to share between threads.

    Args:
        store: the database (its ``transaction`` gives the connection).

    Every method raises ``InvalidParams`` for an invalid collection name and ``StoreError``
    when SQLite fails.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._vectors: OrderedDict[str, _Vectors] = OrderedDict()
        self._cache_lock = threading.Lock()

    def add(self, collection: str, title: str, text: str, *, url: str | None = None,
            embedder: Embeds | None = None) -> DocumentInfo:
        """Add a document: cut it into chunks (``split_chunks``), index them, and with
        ``embedder`` store each chunk's vector (unit length, float32 bytes).

        Args:
            collection: the collection (created by its first document).
            title: the document's title (whitespace trimmed; must not be empty).
            text: its text.
            url: where it came from, if fetched.
            embedder: the model to embed its chunks with (run before the write transaction:
                the database is not held while it runs).

        Returns:
            The stored document.

        Raises:
            InvalidParams: an invalid name, an empty title, a text with no words.
            EmbeddingsUnavailable, ModelLoadError: the embedder cannot run.
        """
        check_name(collection)
        title = title.strip()
        if not title:
            raise InvalidParams("the document's title is empty", param="title")
        chunks = split_chunks(text)
        if not chunks:
            raise InvalidParams("the document has no text", param="text")
        blobs: list[bytes | None] = [None] * len(chunks)
        if embedder is not None:
            blobs = [_unit(row).tobytes() for row in embedder.embed(chunks)]
        now = time.time()
        with self.store.transaction("add a document") as db:
            cursor = db.execute(
                "INSERT INTO knowledge_documents (collection, title, url, text, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (collection, title, url, text, now))
            document_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO knowledge_chunks (document_id, collection, seq, text, vector) "
                "VALUES (?, ?, ?, ?, ?)",
                [(document_id, collection, seq, chunk, blob)
                 for seq, (chunk, blob) in enumerate(zip(chunks, blobs, strict=True))])
        return DocumentInfo(document_id, collection, title, url, len(chunks),
                            embedder is not None, now)

    def embed(self, collection: str, embedder: Embeds, *, batch: int = 256) -> int:
        """Give vectors to the collection's chunks that have none (added without an
        embedder), ``batch`` chunks per write transaction (the model runs outside them).

        Each such chunk is replaced by a row with a new id (same document, ``seq``, text),
        so caches of the collection's vectors, in this process or another, see the change.

        Returns:
            How many chunks got a vector (a chunk deleted or embedded meanwhile is skipped).

        Raises:
            InvalidParams: an invalid name.
            EmbeddingsUnavailable, ModelLoadError: the embedder cannot run.
        """
        check_name(collection)
        with self.store.transaction("read chunks to embed", write=False) as db:
            rows = db.execute("SELECT id, document_id, seq, text, tokens FROM knowledge_chunks "
                              "WHERE collection = ? AND vector IS NULL ORDER BY id",
                              (collection,)).fetchall()
        done = 0
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            vectors = embedder.embed([row[3] for row in part])
            with self.store.transaction("store vectors") as db:
                for (chunk_id, document_id, seq, text, tokens), vector in zip(part, vectors,
                                                                               strict=True):
                    if db.execute("DELETE FROM knowledge_chunks WHERE id = ? AND vector IS NULL",
                                  (chunk_id,)).rowcount:
                        db.execute("INSERT INTO knowledge_chunks (document_id, collection, seq, "
                                   "text, tokens, vector) VALUES (?, ?, ?, ?, ?, ?)",
                                   (document_id, collection, seq, text, tokens,
                                    _unit(vector).tobytes()))
                        done += 1
        return done

    def delete(self, collection: str, document_id: int) -> None:
        """Delete a document and its chunks (they leave the search index with it).

        Raises:
            DocumentNotFound: the collection has no document with that id.
        """
        check_name(collection)
        with self.store.transaction("delete a document") as db:
            deleted = db.execute("DELETE FROM knowledge_documents WHERE id = ? AND collection = ?",
                                 (document_id, collection)).rowcount
        if not deleted:
            raise DocumentNotFound(collection, document_id)

    def documents(self, collection: str) -> list[DocumentInfo]:
        """The collection's documents, oldest first (``[]`` for an unknown collection)."""
        check_name(collection)
        with self.store.transaction("list documents", write=False) as db:
            rows = db.execute(_DOCUMENT + " WHERE d.collection = ? ORDER BY d.id",
                              (collection,)).fetchall()
        return [_document(row) for row in rows]

    def document(self, collection: str, document_id: int) -> DocumentInfo:
        """One document of the collection.

        Raises:
            DocumentNotFound: the collection has no document with that id.
        """
        check_name(collection)
        with self.store.transaction("read a document", write=False) as db:
            row = db.execute(_DOCUMENT + " WHERE d.collection = ? AND d.id = ?",
                             (collection, document_id)).fetchone()
        if row is None:
            raise DocumentNotFound(collection, document_id)
        return _document(row)

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection with at least one document, by name."""
        with self.store.transaction("list collections", write=False) as db:
            rows = db.execute(
                "SELECT collection, COUNT(DISTINCT document_id), COUNT(*), "
                "MAX(vector IS NOT NULL) FROM knowledge_chunks "
                "GROUP BY collection ORDER BY collection").fetchall()
        return [CollectionInfo(str(name), int(docs), int(chunks), bool(embedded))
                for name, docs, chunks, embedded in rows]

    def count_chunks(self, collection: str) -> int:
        """How many chunks the collection has (0 for an unknown one); from the index."""
        check_name(collection)
        with self.store.transaction("count a collection's chunks", write=False) as db:
            row = db.execute("SELECT COUNT(*) FROM knowledge_chunks WHERE collection = ?",
                             (collection,)).fetchone()
        return int(row[0])

    def chunks(self, collection: str) -> list[Hit]:
        """Every chunk of the collection in document order (documents oldest first, then
        ``seq``), each with score 0.0; ``[]`` for an unknown collection."""
        check_name(collection)
        with self.store.transaction("read a collection", write=False) as db:
            rows = db.execute(_HIT + " WHERE c.collection = ? ORDER BY c.document_id, c.seq",
                              (collection,)).fetchall()
        return [_hit(row, 0.0) for row in rows]

    def search(self, collection: str, question: str, k: int = 4,
               embedder: Embeds | None = None) -> list[Hit]:
        """The ``k`` chunks of the collection that best answer ``question``, best first.

        By BM25 alone; hybrid (BM25 and cosine similarity fused by reciprocal rank fusion,
        see the module docstring) when ``embedder`` is given and the collection has vectors.
        The embedder runs only then.

        Args:
            collection: the collection to search (only its chunks are found).
            question: any text; its words are searched for, none read as FTS5 syntax.
            k: most hits, at least 1.
            embedder: the model the collection's vectors came from.

        Returns:
            At most ``k`` hits, best first (ties by chunk id); ``[]`` for a question with no
            words, an empty or unknown collection, or nothing found.

        Raises:
            InvalidParams: an invalid collection name, ``k`` below 1.
            EmbeddingsUnavailable, ModelLoadError: the embedder cannot run.
        """
        check_name(collection)
        if k < 1:
            raise InvalidParams(f"k must be at least 1, not {k}", param="k")
        query = fts_query(question)
        if query is None:
            return []
        depth = max(4 * k, MIN_CANDIDATES)
        with self.store.transaction("search a collection", write=False) as db:
            rows = db.execute(
                "SELECT c.id, bm25(knowledge_fts) AS b FROM knowledge_fts "
                "JOIN knowledge_chunks c ON c.id = knowledge_fts.rowid "
                "WHERE knowledge_fts MATCH ? AND c.collection = ? ORDER BY b, c.id LIMIT ?",
                (query, collection, depth)).fetchall()
            vectors = (self._collection_vectors(db, collection) if embedder is not None
                       else None)
        by_words = [(int(chunk_id), -float(bm25)) for chunk_id, bm25 in rows]
        if vectors is None or embedder is None or not len(vectors.ids):
            return self._hits(by_words[:k])
        asked = _unit(np.asarray(embedder.embed([question]), dtype=np.float32)[0])
        by_meaning = _nearest(vectors, asked, depth)
        return self._hits(fuse([[c for c, _ in by_words], by_meaning])[:k])

    def _hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        """Hits for ``(chunk_id, score)`` pairs, in their order (chunks deleted meanwhile
        are left out)."""
        if not scored:
            return []
        ids = [chunk_id for chunk_id, _ in scored]
        with self.store.transaction("read search hits", write=False) as db:
            rows = db.execute(_HIT + f" WHERE c.id IN ({', '.join('?' * len(ids))})",
                              ids).fetchall()
        found = {int(row[0]): row for row in rows}
        return [_hit(found[c], score) for c, score in scored if c in found]

    def _collection_vectors(self, db: sqlite3.Connection, collection: str) -> _Vectors | None:
        """The collection's vectors (from memory when its chunks have not changed); None
        when it has none. Runs inside the caller's transaction."""
        count, newest = db.execute(
            "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM knowledge_chunks WHERE collection = ?",
            (collection,)).fetchone()
        stamp = (int(count), int(newest))
        with self._cache_lock:
            cached = self._vectors.get(collection)
            if cached is not None and cached.stamp == stamp:
                self._vectors.move_to_end(collection)
                return cached
        rows = db.execute("SELECT id, vector FROM knowledge_chunks "
                          "WHERE collection = ? AND vector IS NOT NULL ORDER BY id",
                          (collection,)).fetchall()
        if not rows:
            return None
        width = len(rows[-1][1])  # a collection embedded by another model: keep the latest's
        rows = [row for row in rows if len(row[1]) == width]
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
        loaded = _Vectors(stamp, ids, matrix.reshape(len(rows), width // 4))
        with self._cache_lock:
            self._vectors[collection] = loaded
            self._vectors.move_to_end(collection)
            while len(self._vectors) > CACHED_COLLECTIONS:
                self._vectors.popitem(last=False)
        return loaded


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion (Cormack, Clarke and Büttcher 2009) of rankings of ids.

    Args:
        rankings: each a list of ids, best first.
        k: the fusion constant (60 in the paper).

    Returns:
        ``(id, score)`` for every id of any ranking, score ``sum of 1 / (k + rank)`` over the
        rankings that hold it (rank from 1), highest first, ties by smaller id.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def _nearest(vectors: _Vectors, asked: np.ndarray, depth: int) -> list[int]:
    """The ids of the ``depth`` vectors most similar to ``asked`` (cosine: all are unit),
    most similar first; ``[]`` when the widths differ (another model's vectors)."""
    if vectors.matrix.shape[1] != asked.shape[0]:
        return []
    similarity = vectors.matrix @ asked
    top = np.arange(len(similarity))
    if depth < len(similarity):  # the best ``depth`` in O(n), then only those sorted
        top = np.argpartition(-similarity, depth - 1)[:depth]
    ordered = sorted(top.tolist(), key=lambda i: (-float(similarity[i]), int(vectors.ids[i])))
    return [int(vectors.ids[i]) for i in ordered]


def _unit(row: np.ndarray) -> np.ndarray:
    """``row`` as float32 of L2 norm 1 (a zero row is left zero)."""
    row = np.asarray(row, dtype=np.float32)
    norm = float(np.linalg.norm(row))
    return row / norm if norm > 0 else row


def _hit(row: Sequence[Any], score: float) -> Hit:
    chunk_id, document_id, seq, title, url, text = row
    return Hit(document_id=int(document_id), chunk_id=int(chunk_id), seq=int(seq),
               title=str(title), url=None if url is None else str(url), text=str(text),
               score=score)


def _document(row: Sequence[Any]) -> DocumentInfo:
    id_, collection, title, url, created_at, chunks, embedded = row
    return DocumentInfo(int(id_), str(collection), str(title), None if url is None else str(url),
                        int(chunks), bool(embedded), float(created_at))
