"""What one running server holds: settings, the model, personas, the queue, metrics, the
conversation database.

Built in the app's lifespan and reached by routes through ``get_state`` (no globals).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from chinwag.backends.base import LanguageBackend
from chinwag.chat.chatbot import Chatbot
from chinwag.chat.persona import Persona, load_personas
from chinwag.errors import ChinwagError, InvalidParams, UnknownPersona
from chinwag.knowledge.policy import OnSourceError
from chinwag.knowledge.service import Knowledge
from chinwag.npc import NPC
from chinwag.prompting import Prompt
from chinwag.server.metrics import Metrics
from chinwag.server.queue import GenerationQueue
from chinwag.settings import Settings
from chinwag.store import Conversation, Store
from chinwag.types import Done, Event, EventStream, SamplingParams

log = logging.getLogger("chinwag.server")


@dataclass
class PersonaModel:
    """An LLM that some personas name (``llm:`` in the persona file), other than the server's
    own, with its own line.

    Attributes:
        backend: the LLM.
        queue: the line for it (its places are its ``max_parallel``).
    """

    backend: LanguageBackend
    queue: GenerationQueue


@dataclass
class ServerState:
    """Everything the routes share.

    Attributes:
        settings: the server's settings.
        backend: the model.
        model_id: the model's id in the OpenAI API (``/v1/models``).
        personas: every persona by name, loaded at start.
        queue: the line for the model.
        metrics: Prometheus metrics.
        store: the conversation database (server-side memory of the persona endpoints).
        knowledge: sources, fetched pages, fact collections, the embedding model.
        persona_models: the LLMs personas name other than the server's own, by the name or
            file the personas give (``llm:``).
        turn_locks: the lock of each stored conversation with a turn running or waiting, so
            that its turns never overlap (weak: a lock goes when no turn needs it).
        background: summaries being written after their replies were sent.
        npcs: the game NPCs talked to through the NPC API, by (persona, NPC id), made on
            first use.
    """

    settings: Settings
    backend: LanguageBackend
    model_id: str
    personas: dict[str, Persona]
    queue: GenerationQueue
    metrics: Metrics
    store: Store
    knowledge: Knowledge
    persona_models: dict[str, PersonaModel] = field(default_factory=dict)
    turn_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    npcs: dict[tuple[str, str], NPC] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, backend: LanguageBackend) -> ServerState:
        """Load the personas, the LLMs they name (other than ``backend``), and open the
        database.

        Raises:
            PersonaError: a persona file cannot be loaded.
            ConfigError, ModelError, BackendError: an LLM a persona names cannot be loaded.
            StoreError: the database cannot be opened (a newer schema, a corrupt file).
        """
        from chinwag.backends.config import open_llm

        metrics = Metrics(backend.cache_stats, backend.engine_stats)
        personas = load_personas(settings.user_personas_dir())
        models: dict[str, PersonaModel] = {}
        store = Store(settings.db_path())
        try:
            for ref in sorted({p.llm for p in personas.values() if p.llm} - {settings.llm}):
                extra = open_llm(ref, settings)
                models[ref] = PersonaModel(extra, GenerationQueue(
                    settings.max_queue, lambda depth: None, parallel=extra.max_parallel))
                log.info("personas naming LLM %r run on %s", ref, extra.info().name)
            return cls(settings=settings, backend=backend, model_id=backend.info().name,
                       personas=personas,
                       queue=GenerationQueue(settings.max_queue, metrics.queue_depth.set,
                                             parallel=backend.max_parallel),
                       metrics=metrics, store=store, knowledge=Knowledge(settings, store),
                       persona_models=models)
        except BaseException:
            for model in models.values():
                model.backend.close()
            store.close()
            raise

    def model_for(self, persona: Persona | None) -> tuple[LanguageBackend, GenerationQueue]:
        """The LLM a persona runs on and its line: the one it names, else the server's."""
        named = self.persona_models.get(persona.llm or "") if persona is not None else None
        return (named.backend, named.queue) if named else (self.backend, self.queue)

    def persona(self, name: str) -> Persona:
        """The persona called ``name``.

        Raises:
            UnknownPersona: no such persona (HTTP 404).
        """
        if name not in self.personas:
            raise UnknownPersona(name, sorted(self.personas))
        return self.personas[name]

    def persona_or_model(self, model: str | None) -> Persona | None:
        """For an OpenAI ``model`` field: None for the model itself (or no model given), the
        persona of that name otherwise.

        Raises:
            UnknownPersona: neither the model's id nor a persona (HTTP 404).
        """
        if not model or model == self.model_id:
            return None
        return self.persona(model)

    async def generate(self, prompt: str | Prompt, params: SamplingParams,
                       who: str = "", persona: Persona | None = None) -> AsyncIterator[Event]:
        """Stream a raw completion of text, or the reply to a rendered chat, through the
        queue (in ``who``'s line, see ``requester``) of the LLM ``persona`` runs on,
        recording metrics when it ends."""
        timer = self.metrics.timer()
        backend, queue = self.model_for(persona)

        def start() -> EventStream:
            if isinstance(prompt, Prompt):
                return backend.generate_chat(prompt, params)
            return backend.generate(prompt, params)

        async for event in queue.stream(start, who):
            if isinstance(event, Done):
                timer.done(event.usage)
            else:
                timer.piece()
            yield event

    def chatbot(self, persona: Persona, user: str | None,
                conversation: str | None = None) -> Chatbot:
        """The chatbot for a persona endpoint's request: the conversation ``conversation``
        (by id), else the user's latest one with the persona (created on first use), else,
        without a user, a fresh conversation that is not stored.

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
            return Chatbot(self.model_for(persona)[0], persona, user=found.user,
                           store=self.store, conversation=found, knowledge=self.knowledge)
        if user is None:
            return Chatbot(self.model_for(persona)[0], persona, knowledge=self.knowledge)
        return Chatbot(self.model_for(persona)[0], persona, user=user, store=self.store,
                       conversation=self.store.conversation_for(persona.name, user),
                       knowledge=self.knowledge)

    async def chat_turn(self, chatbot: Chatbot, text: str, who: str = "", *,
                        status: Callable[[str], Awaitable[None]] | None = None,
                        on_source_error: OnSourceError | None = None,
                        given: str | None = None) -> AsyncIterator[str]:
        """One turn of a server-side conversation, streamed through the queue (in the line
        of the chatbot's user, else of ``who``).

        The message's knowledge is gathered first, in a worker thread and before the turn
        takes a place in the queue (``Chatbot.plan``, ``Chatbot.gather``); ``status`` is
        awaited with each line of what is about to be fetched ("Reading https://...").
        ``chatbot.last_sources`` says what went in. ``given``: a URL or context text
        given beside the message (``/toil``'s ``text``).

        Turns of one stored conversation take place one after the other. When the persona
        keeps a summary and one is due, it is written after the reply has been delivered
        (queued behind the requests already waiting), never delaying this answer.

        Raises:
            InvalidParams, UnknownSource, FetchError: see ``Chatbot.plan`` and
                ``Chatbot.gather`` (before anything is streamed).
        """
        plan = await run_in_threadpool(lambda: chatbot.plan(text, given=given))
        if status is not None:
            for line in plan.status_lines():
                await status(line)
        gathered = await run_in_threadpool(chatbot.gather, plan, on_source_error)
        cid = chatbot.conversation_id
        lock = self._turn_lock(cid) if cid else asyncio.Lock()
        async with lock:
            timer = self.metrics.timer()
            line = f"user:{_owner(chatbot)}" if _owner(chatbot) else who
            queue = self.model_for(chatbot.persona)[1]
            async for piece in queue.stream(lambda: chatbot.send(text, gathered), line):
                timer.piece()
                yield piece
            if chatbot.last is not None:
                timer.done(chatbot.last.usage)
        if chatbot.summary_due():
            task = asyncio.get_running_loop().create_task(self._summarize(chatbot))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    def npc(self, persona: Persona, npc_id: str) -> NPC:
        """The NPC ``npc_id`` of ``persona`` (made on first use): its turns run through
        ``chat_turn``, its memory is in the server's database."""
        found = self.npcs.get((persona.name, npc_id))
        if found is None:
            backend = self.model_for(persona)[0]

            def chatbot(persona: Persona, user: str | None,
                        conversation: Conversation) -> Chatbot:
                return Chatbot(backend, persona, user=user, store=self.store,
                               conversation=conversation, knowledge=self.knowledge)

            found = self.npcs[(persona.name, npc_id)] = NPC(
                persona, chatbot, self.store, npc_id=npc_id, runner=self.chat_turn)
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
            queue = self.model_for(chatbot.persona)[1]
            async for _ in queue.stream(lambda: iter([chatbot.update_summary()]),
                                        f"user:{_owner(chatbot)}"):
                pass
        except ChinwagError as e:
            log.warning("summary of conversation %s not updated: %s",
                        chatbot.conversation_id, e)

    async def close(self, *, close_backend: bool = True) -> None:
        """Shut down, once, in order: wait for the summaries still being written, stop the
        lines, free the LLMs personas name, close the database and, with ``close_backend``,
        the server's own LLM (a backend passed in by a test may be the caller's to close)."""
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        for model in self.persona_models.values():
            model.queue.close()
            model.backend.close()
        self.queue.close()
        self.store.close()
        if close_backend:
            self.backend.close()


def _owner(chatbot: Chatbot) -> str | None:
    """Whose conversation it is (an NPC's chatbot calls the player by a display name)."""
    return chatbot.conversation.user if chatbot.conversation is not None else chatbot.user


def requester(request: Any, user: str | None = None) -> str:
    """Whose line a request waits in (``GenerationQueue``): its user when it names one, else
    the client's address (an HTTP request or websocket)."""
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
