"""Documents cut into chunks, and the chunks that best answer a question within a budget.

One ranking for everything: SQLite FTS5's ``bm25()`` (Robertson and Zaragoza's Okapi BM25
with k1 = 1.2, b = 0.75, as FTS5 implements it), with the ``porter unicode61`` tokenizer.
Fact collections keep their chunks in an FTS5 table of ``chinwag.db``
(``knowledge.collections``); a page or feed over its budget is ranked the same way in an
in-memory FTS5 table (``rank``), so a question finds the same words the same way in both.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence

CHUNK_WORDS = 120
"""Words in a chunk at most (about 160 tokens of English): small enough that a budget of a
few hundred tokens holds several, large enough to keep a paragraph's sense."""

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_chunks(text: str, max_words: int = CHUNK_WORDS) -> list[str]:
    """``text`` cut into chunks of at most ``max_words`` words, in order.

    Paragraphs (separated by blank lines, or single newlines when there are none) are kept
    whole and joined while they fit; a paragraph longer than ``max_words`` is cut between
    sentences, and a sentence longer than that between words.

    Returns:
        The chunks (stripped, none empty); ``[]`` for a text with no words.
    """
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) <= 1:
        paragraphs = [p.strip() for p in text.splitlines() if p.strip()]
    pieces: list[str] = []
    for paragraph in paragraphs:
        if len(paragraph.split()) <= max_words:
            pieces.append(paragraph)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            words = sentence.split()
            pieces += [" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words)]
    chunks: list[str] = []
    size = 0
    for piece in pieces:
        n = len(piece.split())
        if chunks and size + n <= max_words:
            chunks[-1] += "\n" + piece
            size += n
        else:
            chunks.append(piece)
            size = n
    return chunks


def fts_query(question: str) -> str | None:
    """An FTS5 query matching any word of ``question`` (each quoted, so no word is read as
    FTS5 syntax: ``AND``, ``NEAR``, ``*``, ``:``); None when it has no words."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(question)))
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def rank(chunks: Sequence[str], question: str) -> list[int]:
    """The indices of ``chunks`` from the best answer to ``question`` to the worst: those
    that share a word with it by BM25 (FTS5), then the rest in document order."""
    query = fts_query(question)
    matched: list[int] = []
    if query is not None and chunks:
        db = sqlite3.connect(":memory:")
        try:
            db.execute("CREATE VIRTUAL TABLE c USING fts5(text, tokenize = 'porter unicode61')")
            db.executemany("INSERT INTO c (rowid, text) VALUES (?, ?)",
                           [(i, chunk) for i, chunk in enumerate(chunks)])
            rows = db.execute("SELECT rowid FROM c WHERE c MATCH ? ORDER BY bm25(c), rowid",
                              (query,)).fetchall()
        finally:
            db.close()
        matched = [int(i) for (i,) in rows]
    seen = set(matched)
    return matched + [i for i in range(len(chunks)) if i not in seen]


def select_chunks(chunks: Sequence[str], question: str, budget_tokens: int,
                  count_tokens: Callable[[str], int]) -> list[str]:
    """The chunks to send within ``budget_tokens``, in document order.

    When every chunk fits, all of them; otherwise the best ones for ``question`` (``rank``)
    while they fit, skipping any that would go over. The count joins chunks with a blank
    line, as ``join_chunks`` does.

    Args:
        count_tokens: the model's token count of a text.
    """
    sizes = [count_tokens(chunk) + 2 for chunk in chunks]  # + the blank line between
    if sum(sizes) <= budget_tokens:
        return list(chunks)
    kept: set[int] = set()
    used = 0
    for i in rank(chunks, question):
        if used + sizes[i] <= budget_tokens:
            kept.add(i)
            used += sizes[i]
    return [chunks[i] for i in sorted(kept)]


def join_chunks(chunks: Sequence[str]) -> str:
    """Chunks as one text, a blank line between them (``select_chunks`` counts them so)."""
    return "\n\n".join(chunks)
