"""Fact collections in chinwag.db (PLACEHOLDER: being written)."""

from __future__ import annotations

from dataclasses import dataclass

from chinwag.store import Store


@dataclass(frozen=True)
class Hit:
    """A chunk found in a collection."""

    document_id: int
    chunk_id: int
    seq: int
    title: str
    url: str | None
    text: str
    score: float


class Collections:
    """Placeholder."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def search(self, collection: str, question: str, k: int = 4,
               embedder: object | None = None) -> list[Hit]:
        return []

    def chunks(self, collection: str) -> list[Hit]:
        return []
