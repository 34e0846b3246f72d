"""Knowledge from outside the conversation: so far, the one safe fetcher (``fetch.py``), which
every page or feed chinwag reads will go through."""

from __future__ import annotations

from chinwag.knowledge.fetch import Fetched, FetchPolicy, fetch, is_allowed_address

__all__ = ["FetchPolicy", "Fetched", "fetch", "is_allowed_address"]
