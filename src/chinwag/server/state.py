"""What one running server holds: settings, the models, personas, the queues, metrics, the
conversation database, uploaded files and batches.

Built in the app's lifespan and reached by routes through ``get_state`` (no globals).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, overload

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from chinwag.backends.base import LanguageBackend
from chinwag.batch.files import FileStore
from chinwag.batch.jobs import BATCH_SCOPE, Batches
from chinwag.chat.chatbot import Chatbot
from chinwag.chat.persona import Persona, load_personas
from chinwag.errors import ChinwagError, InvalidParams, UnknownPersona
from chinwag.knowledge.policy import OnSourceError
from chinwag.knowledge.service import Knowledge
from chinwag.llms import ModelHandle, ModelRegistry, server_models
from chinwag.npc import NPC
from chinwag.prompting import Prompt
from chinwag.server.metrics import Metrics
from chinwag.server.queue import BACKGROUND, GenerationQueue
from chinwag.settings import Settings
from chinwag.store import Conversation, Store
from chinwag.tools import ToolRequest
from chinwag.types import ChatEvent, Done, Event, SamplingParams

log = logging.getLogger("chinwag.server")


class _ModelEvents:
    """The registry's loads and unloads, told to the metrics and the model's line (whose
    places become the loaded backend's ``max_parallel``)."""

    def __init__(self, metrics: Metrics, queues: dict[str, GenerationQueue]) -> None:
        self.metrics, self.queues = metrics, queues

    def loaded(self, model: str, backend: LanguageBackend, seconds: float) -> None:
        self.metrics.model_loaded(model, seconds)
        queue = self.queues.get(model)
        if queue is not None:
            queue.resize(backend.max_parallel)

    def load_failed(self, model: str, error: ChinwagError) -> None:
        self.metrics.model_load_failed(model)

    def unloaded(self, model: str, reason: str) -> None:
        self.metrics.model_unloaded(model, reason)


def _summed(stats: list[dict[str, float]]) -> dict[str, float]:
    """Counters of several models added up by name."""
    total: dict[str, float] = {}
    for one in stats:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


@dataclass
class ServerState:
    """Everything the routes share.

    Attributes:
        settings: the server's settings.
        models: the LLMs the server offers, loaded on demand (``chinwag.llms``); the first is
            the default.
        model_ids: the model id of each LLM reference (``--llm``, a persona's ``llm:``;
            ``""``: the default).
        handles: each model as a ``LanguageBackend`` (loaded when used), by id.
        queues: each model's line, by id.
        personas: every persona by name, loaded at start.
        metrics: Prometheus metrics.
        store: the conversation database (server-side memory of the persona endpoints).
        knowledge: sources, fetched pages, fact collections, the embedding model.
        files: uploaded files and batch results (``/v1/files``).
        batches: the server's batches (``/v1/batches``), run once ``start`` is given the app.
        turn_locks: the lock of each stored conversation with a turn running or waiting, so
            that its turns never overlap (weak: a lock goes when no turn needs it).
        background: summaries being written after their replies were sent.
        npcs: the game NPCs talked to through the NPC API, by (persona, NPC id), made on
            first use.
        sweeper: the task unloading idle models (``start``).
        given: the default model's backend as it was given to ``build``.
    """

    settings: Settings
    models: ModelRegistry
    model_ids: dict[str, str]
    handles: dict[str, ModelHandle]
    queues: dict[str, GenerationQueue]
    personas: dict[str, Persona]
    metrics: Metrics
    store: Store
    knowledge: Knowledge
    files: FileStore
    batches: Batches
    turn_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    npcs: dict[tuple[str, str], NPC] = field(default_factory=dict)
    sweeper: asyncio.Task[None] | None = None
    given: LanguageBackend | None = None

    @classmethod
    def build(cls, settings: Settings, backend: LanguageBackend, *,
              resident: bool = False) -> ServerState:
        """Load the personas, check the LLMs the settings and personas name (they load on
        first use; ``backend`` is the default, loaded already), and open the database.

        ``resident``: ``backend`` is the caller's (``ModelRegistry.adopt``): never unloaded.

        Raises:
            PersonaError: a persona file cannot be loaded.
            ConfigError: an LLM named by ``--llm`` or a persona has no config, or a broken one.
            StoreError: the database cannot be opened (a newer schema, a corrupt file).
        """
        personas = load_personas(settings.user_personas_dir())
        specs, ids, loader = server_models(settings, backend,
                                           (p.llm for p in personas.values() if p.llm))
        queues: dict[str, GenerationQueue] = {}
        registry_box: list[ModelRegistry] = []

        def stats(kind: str) -> dict[str, float]:
            return _summed([getattr(b, kind)() for b in registry_box[0].loaded()]
                           if registry_box else [])

        metrics = Metrics(lambda: {k: int(v) for k, v in stats("cache_stats").items()},
                          lambda: stats("engine_stats"))

        def depth(_: int) -> None:
            metrics.queue_depth.set(sum(q.waiting for q in queues.values()))

        for spec in specs:
            queues[spec.id] = GenerationQueue(settings.max_queue, depth,
                                              parallel=settings.parallel,
                                              background_places=settings.batch_places)
        registry = ModelRegistry(
            specs, loader, max_loaded=settings.models_max,
            max_bytes=int(settings.models_memory) if settings.models_memory else None,
            idle=settings.models_idle, wait=settings.models_wait,
            events=_ModelEvents(metrics, queues))
        registry_box.append(registry)
        registry.adopt(specs[0].id, backend, resident=resident)
        store = Store(settings.db_path())
        files = FileStore(store, settings.files_path(), int(settings.max_file_bytes))
        return cls(settings=settings, models=registry, model_ids=ids,
                   handles={s.id: ModelHandle(registry, s.id) for s in specs}, queues=queues,
                   personas=personas, metrics=metrics, store=store,
                   knowledge=Knowledge(settings, store), files=files,
                   batches=Batches(store, files, parallel=settings.parallel + 1,
                                   api_key=next(iter(settings.api_keys()), None)),
                   given=backend)

    async def start(self, app: Any = None) -> None:
        """Begin serving: tie the models to this event loop, unload idle ones every second,
        and run (and resume) batches through ``app`` (the ASGI app serving this state;
        None: no batches run)."""
        self.models.bind()
        if app is not None:
            await self.batches.start(app)

        async def sweep() -> None:
            while True:
                await asyncio.sleep(1.0)
                try:
                    await self.models.sweep()
                except ChinwagError as e:  # pragma: no cover - closing a backend failed
                    log.warning("unloading idle models failed: %s", e)

        self.sweeper = asyncio.get_running_loop().create_task(sweep())

    @property
    def model_id(self) -> str:
        """The default model's id (requests that name no model)."""
        return self.models.default

    @property
    def queue(self) -> GenerationQueue:
        """The default model's line."""
        return self.queues[self.models.default]

    def model_of(self, persona: Persona | None, model: str | None = None) -> str:
        """The id of the model a request runs on: its persona's own LLM, else the model it
        names (an id or alias), else the default.

        Raises:
            UnknownModel: ``model`` names no model (HTTP 404).
        """
        if persona is not None and persona.llm and not model:
            return self.model_ids[persona.llm]
        if model:
            return self.models.spec(model).id
        return self.models.default

    def model_for(self, persona: Persona | None, model: str | None = None
                  ) -> tuple[LanguageBackend, GenerationQueue]:
        """The LLM a request runs on (``model_of``, as a handle that loads it when used) and
        its line."""
        found = self.model_of(persona, model)
        return self.handles[found], self.queues[found]

    def persona(self, name: str) -> Persona:
        """The persona called ``name``.

        Raises:
            UnknownPersona: no such persona (HTTP 404).
        """
        if name not in self.personas:
            raise UnknownPersona(name, sorted(self.personas))
        return self.personas[name]

    def resolve(self, model: str | None) -> tuple[Persona | None, str]:
        """For an OpenAI ``model`` field: (None, the model's id) for one of the models (or no
        model given: the default), else (the persona of that name, the model it runs on).

        Raises:
            UnknownPersona: neither a model nor a persona (HTTP 404; the message lists both).
        """
        if not model:
            return None, self.models.default
        found = self.models.resolve(model)
        if found is not None:
            return None, found
        if model not in self.personas:
            raise UnknownPersona(model, sorted(self.personas), models=self.models.ids)
        persona = self.personas[model]
        return persona, self.model_of(persona)

    @overload
    def generate(self, prompt: str | Prompt, params: SamplingParams, who: str = "",
                 persona: Persona | None = None, *, model: str | None = None,
                 keep_alive: float | None = None, tools: None = None
                 ) -> AsyncIterator[Event]: ...

    @overload
    def generate(self, prompt: Prompt, params: SamplingParams, who: str = "",
                 persona: Persona | None = None, *, model: str | None = None,
                 keep_alive: float | None = None, tools: ToolRequest
                 ) -> AsyncIterator[ChatEvent]: ...

    async def generate(self, prompt: str | Prompt, params: SamplingParams,
                       who: str = "", persona: Persona | None = None, *,
                       model: str | None = None, keep_alive: float | None = None,
                       tools: ToolRequest | None = None) -> AsyncIterator[ChatEvent]:
        """Stream a raw completion of text, or the reply to a rendered chat (with ``tools``:
        ``LanguageBackend.generate_tools``, a text or a call), through the queue (in ``who``'s
        line, see ``requester``) of the LLM the request runs on (``model_of``: loaded first
        if need be, and held until the stream ends), recording metrics when it ends.

        Raises:
            UnknownModel, ModelLoadFailed, Overloaded: see ``ModelRegistry.acquire``.
        """
        timer = self.metrics.timer()
        found = self.model_of(persona, model)
        backend, queue = self.handles[found], self.queues[found]

        def start() -> Iterator[ChatEvent]:
            if isinstance(prompt, Prompt):
                if tools is not None:
                    return backend.generate_tools(prompt, params, tools)
                return backend.generate_chat(prompt, params)
            return backend.generate(prompt, params)

        async with self.models.pinned(found, keep_alive):
            async for event in queue.stream(start, who):
                if isinstance(event, Done):
                    timer.done(event.usage)
                else:
                    timer.piece()
                yield event

    def chatbot(self, persona: Persona, user: str | None,
                conversation: str | None = None, *, model: str | None = None,
                new: bool = False) -> Chatbot:
        """The chatbot for a persona endpoint's request: the conversation ``conversation``
        (by id), else (``new``) a new stored conversation, else the user's latest one with
        the persona (created on first use), else, without a user, a fresh conversation that
        is not stored. It runs on ``model_of(persona, model)``.

        Raises:
            ConversationNotFound: no conversation has that id (HTTP 404).
            InvalidParams: the conversation belongs to another persona or user (HTTP 400).
            StoreError: the database cannot be read.
        """
        if conversation is not None:
            found = self.store.get_conversation(conversation)
            if found.persona != persona.name or (user is not None and found.user != user):
                raise InvalidParams(f"conversation {conversation} is not one of "
                                    f"{user or 'anyone'}'s with {persona.name}",
                                    param="conversation")
            return Chatbot(self.model_for(persona, model)[0], persona, user=found.user,
                           store=self.store, conversation=found, knowledge=self.knowledge)
        backend = self.model_for(persona, model)[0]
        if user is None:
            return Chatbot(backend, persona, knowledge=self.knowledge)
        return Chatbot(backend, persona, user=user, store=self.store,
                       conversation=None if new else self.store.conversation_for(persona.name,
                                                                                 user),
                       knowledge=self.knowledge)

    def chatbot_in(self, persona: Persona, user: str | None,
                   conversation: Conversation) -> Chatbot:
        """A chatbot for a stored conversation (an NPC's memory of a player, a person's in a
        Slack thread), running on the persona's model, calling its person ``user`` in the
        prompt (a display name; None: the persona's ``user_name``) whatever the
        conversation's user id (``npc.ChatbotFactory``)."""
        return Chatbot(self.model_for(persona)[0], persona, user=user, store=self.store,
                       conversation=conversation, knowledge=self.knowledge)

    async def chat_turn(self, chatbot: Chatbot, text: str, who: str = "", *,
                        status: Callable[[str], Awaitable[None]] | None = None,
                        on_source_error: OnSourceError | None = None,
                        given: str | None = None,
                        queued: Callable[[int], Awaitable[None]] | None = None,
                        replace_from: int | None = None) -> AsyncIterator[str]:
        """One turn of a server-side conversation, streamed through the queue (in the line
        of the chatbot's user, else of ``who``).

        The message's knowledge is gathered first, in a worker thread and before the turn
        takes a place in the queue (``Chatbot.plan``, ``Chatbot.gather``); ``status`` is
        awaited with each line of what is about to be fetched ("Reading https://...").
        ``chatbot.last_sources`` says what went in. ``given``: a URL or context text
        given beside the message (``/toil``'s ``text``). ``queued`` is awaited with the
        number of requests ahead while the turn waits in the queue
        (``GenerationQueue.stream``'s ``on_wait``). ``replace_from``: the conversation's
        messages from this seq on are forgotten first (an edit, a regenerated answer), under
        the conversation's lock.

        Turns of one stored conversation take place one after the other. When the persona
        keeps a summary and one is due, it is written after the reply has been delivered
        (queued behind the requests already waiting), never delaying this answer.

        Raises:
            InvalidParams, UnknownSource, FetchError: see ``Chatbot.plan`` and
                ``Chatbot.gather`` (before anything is streamed).
        """
        model = self.model_of_chatbot(chatbot)
        async with self.models.pinned(model):
            plan = await run_in_threadpool(lambda: chatbot.plan(text, given=given))
            if status is not None:
                for line in plan.status_lines():
                    await status(line)
            gathered = await run_in_threadpool(chatbot.gather, plan, on_source_error)
            cid = chatbot.conversation_id
            lock = self._turn_lock(cid) if cid else asyncio.Lock()
            async with lock:
                if replace_from is not None:
                    await run_in_threadpool(chatbot.truncate, replace_from)
                timer = self.metrics.timer()
                line = f"user:{_owner(chatbot)}" if _owner(chatbot) else who
                async for piece in self.queues[model].stream(
                        lambda: chatbot.send(text, gathered), line, queued):
                    timer.piece()
                    yield piece
                if chatbot.last is not None:
                    timer.done(chatbot.last.usage)
        if chatbot.summary_due():
            task = asyncio.get_running_loop().create_task(self._summarize(chatbot))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    def model_of_chatbot(self, chatbot: Chatbot) -> str:
        """The id of the model a chatbot of this server runs on."""
        if isinstance(chatbot.backend, ModelHandle):
            return chatbot.backend.model_id
        return self.model_of(chatbot.persona)

    def npc(self, persona: Persona, npc_id: str) -> NPC:
        """The NPC ``npc_id`` of ``persona`` (made on first use): its turns run through
        ``chat_turn``, its memory is in the server's database."""
        found = self.npcs.get((persona.name, npc_id))
        if found is None:
            found = self.npcs[(persona.name, npc_id)] = NPC(
                persona, self.chatbot_in, self.store, npc_id=npc_id, runner=self.chat_turn)
        return found

    def _turn_lock(self, conversation: str) -> asyncio.Lock:
        """The lock of a stored conversation's turns. It lives as long as a turn holds it or
        waits for it (a weak reference here), so ``turn_locks`` does not grow with the
        number of conversations."""
        lock = self.turn_locks.get(conversation)
        if lock is None:
            lock = self.turn_locks[conversation] = asyncio.Lock()
        return lock

    async def _summarize(self, chatbot: Chatbot) -> None:
        try:
            queue = self.queues[self.model_of_chatbot(chatbot)]
            async for _ in queue.stream(lambda: iter([chatbot.update_summary()]),
                                        f"user:{_owner(chatbot)}"):
                pass
        except ChinwagError as e:
            log.warning("summary of conversation %s not updated: %s",
                        chatbot.conversation_id, e)

    async def close(self, *, close_backend: bool = True) -> None:
        """Shut down, once, in order: wait for the summaries still being written, stop
        unloading idle models, stop the lines, unload the models (with ``close_backend``, the
        default one too: a backend passed in by a test may be the caller's to close) and close
        the database."""
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        if self.sweeper is not None:
            self.sweeper.cancel()
            await asyncio.gather(self.sweeper, return_exceptions=True)
        for queue in self.queues.values():
            queue.close()
        await self.models.close(keep=None if close_backend else self.given)
        self.store.close()


def _owner(chatbot: Chatbot) -> str | None:
    """Whose conversation it is (an NPC's chatbot calls the player by a display name)."""
    return chatbot.conversation.user if chatbot.conversation is not None else chatbot.user


def requester(request: Any, user: str | None = None) -> str:
    """Whose line a request waits in (``GenerationQueue``): a server batch's background line
    for its lines (``batch:{id}``), else its user when it names one, else the client's
    address (an HTTP request or websocket)."""
    batch = (getattr(request, "scope", None) or {}).get(BATCH_SCOPE)
    if batch:
        return f"{BACKGROUND}{batch}"
    if user:
        return f"user:{user}"
    client = getattr(request, "client", None)
    return f"client:{client.host}" if client is not None else "client:?"


def get_state(request: Any) -> ServerState:
    """The ``ServerState`` of the app serving ``request`` (an HTTP request or websocket)."""
    state: ServerState = request.app.state.chinwag
    return state


def state_of(request: Request) -> ServerState:
    """FastAPI dependency: the server's state."""
    return get_state(request)


State = Annotated[ServerState, Depends(state_of)]
"""A route parameter typed ``State`` receives the server's state."""
