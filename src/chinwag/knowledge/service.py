"""``Knowledge``: what one process knows beyond the conversation, and how a question gets it.

One object per server (``ServerState.knowledge``) or CLI session holds the fetch policy, the
sources (``sources.SourceRegistry``), the cache of fetched pages and feeds
(``cache.PageCache``), the fact collections in ``chinwag.db`` (``collections.Collections``)
and the embedding model (``embeddings.Embedder``, loaded on first use).
"""

from __future__ import annotations

from chinwag.knowledge.cache import PageCache
from chinwag.knowledge.collections import Collections
from chinwag.knowledge.embeddings import Embedder
from chinwag.knowledge.fetch import FetchPolicy
from chinwag.knowledge.sources import SourceRegistry
from chinwag.settings import Settings
from chinwag.store import Store


class Knowledge:
    """The knowledge of one server or CLI session.

    Args:
        settings: ``fetch_allow_private``, ``fetch_max_bytes``, the sources folder.
        store: the database the fact collections live in.

    Attributes:
        policy: what fetching may reach (``FetchPolicy.from_settings``).
        sources: the named sources of the sources folder.
        pages: fetched documents, kept for their refresh time.
        collections: the fact collections.
        embedder: the embedding model (loaded on first use).
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.policy = FetchPolicy.from_settings(settings)
        self.sources = SourceRegistry(settings.user_sources_dir())
        self.pages = PageCache()
        self.collections = Collections(store)
        self.embedder = Embedder()
