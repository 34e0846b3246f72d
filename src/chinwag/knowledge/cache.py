"""Fetched documents kept for their refresh time (PLACEHOLDER: being written)."""

from __future__ import annotations

from chinwag.knowledge.extract import Document, extract
from chinwag.knowledge.fetch import FetchPolicy, fetch


class PageCache:
    """Documents by URL (placeholder: no caching yet)."""

    def get(self, url: str, policy: FetchPolicy, *, max_items: int = 10,
            refresh: float = 0.0) -> Document:
        return extract(fetch(url, policy), max_items=max_items)
