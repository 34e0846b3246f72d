"""Fetched pages and feeds, kept for their source's refresh time and then revalidated.

``PageCache.get`` answers from memory while a copy is younger than ``refresh`` seconds; after
that it fetches again conditionally (``If-None-Match``/``If-Modified-Since`` from the copy's
``ETag``/``Last-Modified``): a 304 keeps the copy for another ``refresh`` seconds, a 200
replaces it. Copies are keyed by URL and ``max_items`` (a feed read for 3 items is not the
feed read for 10) and the least recently used go beyond ``max_entries``. A failed fetch
raises and leaves the cache as it was. Threads may share one cache; two asking for the same
key at once make one fetch, the second waiting for the first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from chinwag.knowledge.extract import DEFAULT_MAX_ITEMS, Document, extract
from chinwag.knowledge.fetch import FetchPolicy, fetch

Key = tuple[str, int]  # (url, max_items)
DEFAULT_REFRESH = 600.0  # seconds


@dataclass(frozen=True)
class _Entry:
    """A cached document, the validators to revalidate it with, and when it was last
    fetched or confirmed (the cache's clock, seconds)."""

    document: Document
    etag: str | None
    last_modified: str | None
    checked_at: float


@dataclass
class _KeyLock:
    """The lock of one key while anyone uses it (``users`` of them)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class PageCache:
    """Documents by (URL, max_items), kept ``refresh`` seconds, then revalidated.

    Args:
        max_entries: most documents kept; the least recently used go first.
        clock: the time in seconds (tests pass their own; default ``time.time``).
    """

    def __init__(self, max_entries: int = 256, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()  # guards _entries and _key_locks
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._key_locks: dict[Key, _KeyLock] = {}

    def get(self, url: str, policy: FetchPolicy, *, max_items: int = DEFAULT_MAX_ITEMS,
            refresh: float = DEFAULT_REFRESH) -> Document:
        """The document at ``url``: the cached copy while younger than ``refresh`` seconds,
        else fetched (conditionally, when a copy is held) and extracted.

        Args:
            url: the page or feed.
            policy: what fetching may reach.
            max_items: most feed items kept (part of the key).
            refresh: seconds a copy is used without asking the server; 0: ask every time.

        Returns:
            The document (the same object as before when the copy is fresh or the server
            answered 304 Not Modified).

        Raises:
            FetchError: what ``fetch`` and ``extract`` raise; the cache keeps what it had.
        """
        key = (url, max_items)
        with self._locked(key):
            with self._lock:
                held = self._entries.get(key)
                if held is not None:
                    self._entries.move_to_end(key)
            if held is not None and self._clock() - held.checked_at < refresh:
                return held.document
            fetched = fetch(url, policy, etag=held.etag if held else None,
                            last_modified=held.last_modified if held else None)
            if fetched.status == 304 and held is not None:
                entry = replace(held, etag=fetched.etag or held.etag,
                                last_modified=fetched.last_modified or held.last_modified,
                                checked_at=self._clock())
            else:
                entry = _Entry(extract(fetched, max_items=max_items), fetched.etag,
                               fetched.last_modified, self._clock())
            self._keep(key, entry)
            return entry.document

    def forget(self, url: str) -> None:
        """Drop every copy of ``url`` (whatever its ``max_items``)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == url]:
                del self._entries[key]

    def __len__(self) -> int:
        """How many documents are held."""
        with self._lock:
            return len(self._entries)

    def _keep(self, key: Key, entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    @contextmanager
    def _locked(self, key: Key) -> Iterator[None]:
        """Hold ``key``'s own lock (made on first use, dropped when nobody uses it)."""
        with self._lock:
            held = self._key_locks.setdefault(key, _KeyLock())
            held.users += 1
        try:
            with held.lock:
                yield
        finally:
            with self._lock:
                held.users -= 1
                if held.users == 0:
                    del self._key_locks[key]
