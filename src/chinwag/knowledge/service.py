"""``Knowledge``: what one process knows beyond the conversation, and how a question gets it.

One object per server (``ServerState.knowledge``) or CLI session holds the fetch policy, the
sources (``sources.SourceRegistry``), the cache of fetched pages and feeds
(``cache.PageCache``), the fact collections in ``chinwag.db`` (``collections.Collections``)
and the embedding model (``embeddings.Embedder``, loaded on first use).

A user message gets its knowledge in two steps, so that a caller can say what is about to
happen ("Reading https://...") before it happens:

1. ``plan``: read the message's prefix (``prefixes``), resolve the source it names, pick
   the persona's sources for the question (their ``triggers``, or the model through
   ``choose``) and its fact collections. No network.
2. ``gather``: fetch the pages and feeds (``PageCache``, through the one safe fetcher), search
   the collections, and cut each piece to its token budget, keeping the chunks that best
   match the question (BM25) in document order. A source that fails is reported, not
   raised, unless the persona or the request asks for ``on_source_error: fail``.

``merge_context`` then keeps the pieces of a stored conversation within the persona's context
budget (``Chatbot``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chinwag.errors import ChinwagError, FetchError, UnknownSource
from chinwag.knowledge.cache import PageCache
from chinwag.knowledge.chunks import join_chunks, select_chunks, split_chunks
from chinwag.knowledge.collections import Collections, Hit
from chinwag.knowledge.embeddings import Embedder
from chinwag.knowledge.fetch import FetchPolicy
from chinwag.knowledge.policy import CollectionsPolicy, ContextPolicy, OnSourceError
from chinwag.knowledge.prefixes import SUMMARISE, read_prefix
from chinwag.knowledge.sources import Source, SourceRegistry, triggered
from chinwag.settings import Settings
from chinwag.store import Store
from chinwag.types import ContextPiece, Message

if TYPE_CHECKING:
    from chinwag.backends.base import LanguageBackend


class Persona(Protocol):
    """What knowledge needs of a persona (``chat.persona.Persona`` is one; the chat layer
    sits above this one, so it is described here rather than imported)."""

    @property
    def sources(self) -> tuple[str | Source, ...]: ...
    @property
    def context(self) -> ContextPolicy: ...
    @property
    def knowledge(self) -> CollectionsPolicy: ...

AD_HOC_REFRESH = 300.0
"""Seconds a page or feed named by a URL in a message is kept before it is fetched again
(a conditional request): a conversation's follow-up questions find the same text."""

WHOLE_COLLECTION_CHUNKS = 64
"""A collection of at most this many chunks is counted to see whether all of it fits the
budget; a bigger one is searched."""

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class SourceReport:
    """What one source gave an answer, for people (the ``sources`` list of a response).

    Attributes:
        name: the source's name (the URL for a page named in the message, ``context`` for
            ``|CONTEXT|`` text).
        kind: ``page``, ``feed``, ``collection`` or ``text``.
        url: where it came from, or None.
        title: its title, or None.
        fetched_at: when it was fetched, unix seconds, or None.
        tokens: how many tokens of it went into the prompt (0 when it failed).
        error: why it failed (a ``FetchError`` code, ``source_not_found``), or None.
    """

    name: str
    kind: str
    url: str | None = None
    title: str | None = None
    fetched_at: float | None = None
    tokens: int = 0
    error: str | None = None

    @classmethod
    def of(cls, piece: ContextPiece) -> SourceReport:
        """The report of a piece that went into the prompt."""
        return cls(piece.name, piece.kind, piece.url, piece.title, piece.fetched_at,
                   piece.tokens)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: ``{"name", "kind", "url", "title", "fetched_at", "tokens"}`` and
        ``"error"`` when it failed."""
        shown: dict[str, Any] = {"name": self.name, "kind": self.kind, "url": self.url,
                                 "title": self.title, "fetched_at": self.fetched_at,
                                 "tokens": self.tokens}
        if self.error is not None:
            shown["error"] = self.error
        return shown


@dataclass(frozen=True)
class Wanted:
    """One piece of knowledge a question needs, before it is fetched.

    Attributes:
        kind: ``text`` (literal context), ``page`` (a URL; a page or a feed), or a source's
            kind (``page``, ``feed``, ``collection``).
        name: what reports call it.
        budget: its most tokens in the prompt.
        source: the source, when it is one.
        url: the page or feed to fetch, when it is one.
        text: the literal context, for ``text``.
        error: set when it cannot be had at all (a persona naming a source nobody defines).
    """

    kind: str
    name: str
    budget: int
    source: Source | None = None
    url: str | None = None
    text: str | None = None
    error: str | None = None

    def status_line(self) -> str | None:
        """What a client may show while it is fetched ("Reading https://..."), or None."""
        if self.error is not None or self.kind == "text":
            return None
        if self.kind == "collection":
            return f"Searching {self.name}"
        return f"Reading {self.url}"


@dataclass(frozen=True)
class Plan:
    """A message's question and the knowledge it needs (``Knowledge.plan``)."""

    question: str
    wanted: tuple[Wanted, ...] = ()

    def status_lines(self) -> list[str]:
        """What is about to be fetched or searched, one line each."""
        return [line for w in self.wanted if (line := w.status_line()) is not None]


@dataclass(frozen=True)
class Gathered:
    """A question with its knowledge (``Knowledge.gather``).

    Attributes:
        question: the message without its prefix.
        pieces: the knowledge, each within its budget.
        reports: one per wanted piece, in order, failures included.
    """

    question: str
    pieces: tuple[ContextPiece, ...] = ()
    reports: tuple[SourceReport, ...] = field(default_factory=tuple)


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

    Raises:
        SourceError: a file of the sources folder is not a valid source.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.policy = FetchPolicy.from_settings(settings)
        self.sources = SourceRegistry(settings.user_sources_dir())
        self.pages = PageCache()
        self.collections = Collections(store)
        self.embedder = Embedder()

    # -- 1. plan -------------------------------------------------------------------------

    def source(self, name: str, persona: Persona | None = None) -> Source:
        """The source called ``name``: one defined inline in ``persona``, else one of the
        sources folder.

        Raises:
            UnknownSource: neither defines it (HTTP 404).
        """
        if persona is not None:
            for entry in persona.sources:
                if isinstance(entry, Source) and entry.name == name:
                    return entry
        return self.sources.get(name)

    def plan(self, text: str, persona: Persona | None, *,
             backend: LanguageBackend | None = None, param: str = "prompt",
             given: str | None = None, follow_up: bool = False) -> Plan:
        """The question of a user message and the knowledge it needs.

        Without a persona the message is taken as it is (prefixes are a persona feature).

        Args:
            text: the user's message.
            persona: who answers: its ``sources``, ``context`` and ``knowledge`` settings.
            backend: the model, when the persona chooses its sources with it.
            param: the request field the message came from, named in errors.
            given: a URL, or text to use as context, given beside the message (``/toil``'s
                ``text``).
            follow_up: only the message's own prefix counts (an earlier message of a chat
                sent again: its sources and collections were for its own time).

        Raises:
            InvalidParams: an unterminated ``|CONTEXT|`` (HTTP 400).
            UnknownSource: ``|RAG|name|/RAG|`` names no source (HTTP 404).
        """
        if persona is None:
            return Plan(text)
        asked = read_prefix(text, param=param)
        budget = persona.context.budget_tokens
        wanted: list[Wanted] = []
        if asked.context is not None:
            wanted.append(Wanted("text", "context", budget, text=asked.context))
        if asked.url is not None:
            wanted.append(Wanted("page", asked.url, budget, url=asked.url))
        if given is not None and given.strip():
            beside = read_prefix(given.strip())
            if beside.url is not None and beside.question == SUMMARISE:
                wanted.append(Wanted("page", beside.url, budget, url=beside.url))
            else:
                wanted.append(Wanted("text", "context", budget, text=given.strip()))
        named: str | None = None
        if asked.source is not None:
            found = self.source(asked.source, persona)
            wanted.append(_wanted(found))
            named = found.name
        if follow_up:
            return Plan(asked.question, tuple(wanted))
        candidates: list[Source] = []
        for entry in persona.sources:
            if isinstance(entry, Source):
                candidates.append(entry)
                continue
            try:
                candidates.append(self.sources.get(entry))
            except UnknownSource:
                wanted.append(Wanted("page", entry, 0, error="source_not_found"))
        candidates = [s for s in candidates if s.name != named]
        if persona.context.choose_sources == "model" and backend is not None:
            chosen = _chosen_by_model(backend, asked.question, candidates)
        else:
            chosen = triggered(asked.question, candidates)
        wanted += [_wanted(s) for s in chosen]
        wanted += [Wanted("collection", c, persona.knowledge.budget_tokens)
                   for c in persona.knowledge.collections]
        return Plan(asked.question, tuple(wanted))

    # -- 2. gather -----------------------------------------------------------------------

    def gather(self, plan: Plan, count_tokens: CountTokens, *,
               on_error: OnSourceError = "skip", top_k: int = 4) -> Gathered:
        """Fetch and search what ``plan`` wants, each piece cut to its budget.

        Args:
            count_tokens: the model's token count (budgets are in its tokens).
            on_error: ``skip`` reports a failed source; ``fail`` raises its error.
            top_k: chunks taken from a fact collection at most.

        Raises:
            FetchError: a page or feed failed, with ``on_error="fail"`` (HTTP 422).
            StoreError: the collections cannot be read.
        """
        pieces: list[ContextPiece] = []
        reports: list[SourceReport] = []
        for wanted in plan.wanted:
            if wanted.error is not None:
                if on_error == "fail":
                    raise UnknownSource(wanted.name, sorted(self.sources.all()))
                reports.append(_failed(wanted, wanted.error))
                continue
            try:
                piece = self._piece(wanted, plan.question, count_tokens, top_k)
            except FetchError as e:
                if on_error == "fail":
                    raise
                reports.append(_failed(wanted, e.code))
                continue
            if piece is None:
                reports.append(SourceReport(wanted.name, wanted.kind))
                continue
            pieces.append(piece)
            reports.append(SourceReport.of(piece))
        return Gathered(plan.question, tuple(pieces), tuple(reports))

    def _piece(self, wanted: Wanted, question: str, count_tokens: CountTokens,
               top_k: int) -> ContextPiece | None:
        source = wanted.source
        describe = source.describe if source else ""
        if wanted.kind == "text":
            text = _fit(wanted.text or "", question, wanted.budget, count_tokens)
            key = "context:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            return ContextPiece(key, "context", "text", text, count_tokens(text))
        if wanted.kind == "collection":
            collection = source.collection if source and source.collection else wanted.name
            text = self._search(collection, question, wanted.budget, count_tokens, top_k)
            if not text:
                return None
            return ContextPiece(f"collection:{wanted.name}", wanted.name, "collection", text,
                                count_tokens(text), describe=describe)
        assert wanted.url is not None
        document = self.pages.get(wanted.url, self.policy,
                                  max_items=source.max_items if source else 10,
                                  refresh=source.refresh if source else AD_HOC_REFRESH)
        text = _fit(document.text, question, wanted.budget, count_tokens)
        return ContextPiece(wanted.name, wanted.name, document.kind, text, count_tokens(text),
                            url=document.url, title=document.title, describe=describe,
                            fetched_at=document.fetched_at)

    def _search(self, collection: str, question: str, budget: int, count_tokens: CountTokens,
                top_k: int) -> str:
        """A collection's chunks for ``question`` within ``budget``: all of it when it fits,
        else the best ``top_k`` by search (hybrid when it has embeddings), best first."""
        if 0 < self.collections.count_chunks(collection) <= WHOLE_COLLECTION_CHUNKS:
            whole = [_hit_line(h) for h in self.collections.chunks(collection)]
            if whole and sum(count_tokens(t) + 1 for t in whole) <= budget:
                return "\n".join(whole)
        embedder = self.embedder if self.embedder.available() else None
        hits = self.collections.search(collection, question, top_k, embedder=embedder)
        kept: list[str] = []
        used = 0
        for hit in hits:
            line = _hit_line(hit)
            size = count_tokens(line) + 1
            if used + size <= budget:
                kept.append(line)
                used += size
        return "\n".join(kept)


def _wanted(source: Source) -> Wanted:
    if source.kind == "collection":
        return Wanted("collection", source.name, source.budget_tokens, source=source)
    return Wanted(source.kind, source.name, source.budget_tokens, source=source, url=source.url)


def _failed(wanted: Wanted, code: str) -> SourceReport:
    return SourceReport(wanted.name, wanted.kind, wanted.url, error=code)


def _fit(text: str, question: str, budget: int, count_tokens: CountTokens) -> str:
    return join_chunks(select_chunks(split_chunks(text), question, budget, count_tokens))


def _hit_line(hit: Hit) -> str:
    return f"- {hit.title}: {hit.text}" if hit.title else f"- {hit.text}"


def _chosen_by_model(backend: LanguageBackend, question: str,
                     candidates: Sequence[Source]) -> list[Source]:
    """The one source the model picks for ``question`` (or none), through ``choose``:
    scored by log-probability, not parsed from generated text."""
    if not candidates:
        return []
    listing = "\n".join(f"- {s.name}: {s.describe or s.kind}" for s in candidates)
    messages = [Message("system", "Pick the source that helps answer the question, or "
                                  "'none' when none of them does.\nSources:\n" + listing),
                Message("user", question)]
    try:
        choice = backend.choose(messages, [*(s.name for s in candidates), "none"])
    except ChinwagError:
        return []
    return [candidates[choice.index]] if choice.index < len(candidates) else []


def merge_context(kept: Sequence[ContextPiece], new: Sequence[ContextPiece],
                  budget: int) -> tuple[list[ContextPiece], list[str]]:
    """A conversation's knowledge after a turn brought ``new`` pieces.

    A new piece replaces a kept one with the same key and counts as the newest. While the
    total is over ``budget`` tokens the oldest piece goes, but the newest one always stays.

    Returns:
        The pieces kept, oldest first, and the keys of those that went.
    """
    fresh = {p.key for p in new}
    merged = [p for p in kept if p.key not in fresh] + list(new)
    gone: list[str] = []
    while len(merged) > 1 and sum(p.tokens for p in merged) > budget:
        gone.append(merged.pop(0).key)
    return merged, gone


def gather_messages(knowledge: Knowledge, persona: Persona, messages: Sequence[Message],
                    backend: LanguageBackend, *, on_error: OnSourceError | None = None,
                    param: str = "messages") -> tuple[list[Message], Gathered]:
    """The knowledge of a whole chat sent again with each request (the OpenAI API keeps no
    conversation): every user message's prefix is read, the last message's sources and
    collections are picked, pages come from the cache (``AD_HOC_REFRESH``), so a follow-up
    question finds the text the first one did, with the same prompt prefix.

    Returns:
        The messages with their prefixes taken off, and the knowledge for the turn (within
        the persona's context budget, the most recent messages' pieces kept first); its
        ``reports`` cover the pieces sent and this turn's failures.

    Raises:
        What ``Knowledge.plan`` and ``Knowledge.gather`` raise.
    """
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    out: list[Message] = []
    pieces: list[ContextPiece] = []
    reports: list[SourceReport] = []
    question = ""
    for i, message in enumerate(messages):
        if message.role != "user":
            out.append(message)
            continue
        plan = knowledge.plan(message.content, persona, backend=backend, param=param,
                              follow_up=i != last)
        gathered = knowledge.gather(plan, backend.count_tokens,
                                    on_error=on_error or persona.context.on_source_error,
                                    top_k=persona.knowledge.top_k) if plan.wanted else \
            Gathered(plan.question)
        pieces, _ = merge_context(pieces, gathered.pieces, persona.context.budget_tokens)
        if i == last:
            reports = [r for r in gathered.reports if r.error is not None]
            question = plan.question
        out.append(Message("user", plan.question))
    return out, Gathered(question, tuple(pieces),
                         (*(SourceReport.of(p) for p in pieces), *reports))
