"""``NPC``: a persona that players talk to in a game, for any game (asyncio, no game imports).

Each (NPC, player) pair is an ordinary chinwag conversation in the ``Store``, in the scope of
the NPC's id: the persona's memory policy, summary and token budget apply, it survives
restarts, and two NPCs of one persona (two villagers in two rooms) remember a player apart.

A turn (``talk``) runs ``Chatbot.send`` through a *runner*: by default in a worker thread; the
server passes ``ServerState.chat_turn`` (its fair queue, knowledge, metrics, summaries).
While the model is slow, the persona's ``thinking_lines`` are yielded; then the reply's
tokens and the tidied ``Reply``, or ``Failed`` with a fallback line. A turn that fails or is
cancelled is taken back: neither the player's line nor half a reply stays in memory.

Lines the NPC overhears (``overhear``) are stored as ``system`` messages of each hearer's
conversation and joined, in brackets, in front of that hearer's next message
(``chat.memory.fold_overheard``). They are written between turns: a line heard while a hearer's
turn runs is written when the turn ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Literal, Protocol

from chinwag.backends.base import LanguageBackend
from chinwag.cancellation import stream_in_thread
from chinwag.chat.chatbot import Chatbot
from chinwag.chat.persona import Persona
from chinwag.errors import Cancelled, ChinwagError, InvalidParams, NPCBusy
from chinwag.npc.events import Failed, NPCEvent, Reply, Thinking, Token
from chinwag.store import Conversation, Store

log = logging.getLogger("chinwag.npc")

CONTEXT_KEYS = ("name", "description", "location", "user")
"""What a turn's ``context`` may fill in: the persona's placeholders."""

OnBusy = Literal["queue", "reject"]
Runner = Callable[[Chatbot, str, str], AsyncIterator[str]]
"""Streams one turn: ``runner(chatbot, text, who)`` yields the pieces of
``chatbot.send(text)``, produced off the event loop (``who``: whose line it waits in,
``"user:<player>"``); closing it stops the generation. A runner given keeps the running
summary up to date itself (``ServerState.chat_turn`` does)."""
Sleep = Callable[[float], Awaitable[None]]


class ChatbotFactory(Protocol):
    """Makes the chatbot of one turn: ``persona`` (context filled in), the player's display
    name ``user`` (None: the persona's ``user_name``) and the stored ``conversation``."""

    def __call__(self, persona: Persona, user: str | None,
                 conversation: Conversation) -> Chatbot: ...


def thread_runner(chatbot: Chatbot, text: str, who: str) -> AsyncIterator[str]:
    """The default runner: the turn in a worker thread, nothing shared."""
    return stream_in_thread(lambda: chatbot.send(text))


@dataclass
class _Player:
    """What the NPC holds for one player: the lock of their turns, the talks running or
    waiting, the lines overheard and not yet written."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    talks: set[asyncio.Task[None]] = field(default_factory=set)
    heard: list[str] = field(default_factory=list)


class NPC:
    """A persona that players talk to (see the module docstring).

    Args:
        persona: who the NPC is.
        backend: the model, or a ``ChatbotFactory`` (the server's, with its knowledge).
        store: where each player's conversation is kept.
        npc_id: this NPC's id (default: the persona's name): its memory's scope.
        thinking_after: seconds without a token before the first thinking line.
        thinking_every: seconds between the next thinking lines.
        on_busy: a player talking while their last line is still being answered waits
            (``queue``) or is refused with ``NPCBusy`` (``reject``).
        runner: how a generation is run (default: ``thread_runner``).
        sleep: how to wait (default: ``asyncio.sleep``; tests pass a clock they control).
    """

    def __init__(self, persona: Persona, backend: LanguageBackend | ChatbotFactory,
                 store: Store, *, npc_id: str | None = None, thinking_after: float = 2.0,
                 thinking_every: float = 8.0, on_busy: OnBusy = "queue",
                 runner: Runner | None = None, sleep: Sleep = asyncio.sleep) -> None:
        if thinking_after < 0 or thinking_every <= 0:
            raise InvalidParams("thinking_after must be >= 0 and thinking_every > 0 seconds",
                                param="thinking_after")
        if on_busy not in ("queue", "reject"):
            raise InvalidParams(f"on_busy must be queue or reject, not {on_busy!r}",
                                param="on_busy")
        self.persona = persona
        self.store = store
        self.id = npc_id or persona.name
        self.thinking_after = thinking_after
        self.thinking_every = thinking_every
        self.on_busy = on_busy
        self._runner = runner or thread_runner
        self._summarizes = runner is None
        self._sleep = sleep
        if isinstance(backend, LanguageBackend):
            model = backend

            def factory(persona: Persona, user: str | None,
                        conversation: Conversation) -> Chatbot:
                return Chatbot(model, persona, user=user, store=store, conversation=conversation)

            self._factory: ChatbotFactory = factory
        else:
            self._factory = backend
        self._players: dict[str, _Player] = {}
        self._fallbacks = itertools.count()
        self._background: set[asyncio.Task[None]] = set()

    # -- talking ---------------------------------------------------------------------------

    def busy(self, player: str) -> bool:
        """Whether the NPC is answering ``player`` (or has their talk waiting)."""
        found = self._players.get(player)
        return found is not None and bool(found.talks)

    def talk(self, player: str, text: str, context: Mapping[str, str] | None = None,
             *, thinking_after: float | None = None,
             on_busy: OnBusy | None = None) -> AsyncGenerator[NPCEvent, None]:
        """What the NPC answers ``player`` saying ``text``: ``Thinking`` lines while the model
        is slow, ``Token`` pieces, then one ``Reply`` or ``Failed`` (``npc.events``).

        Args:
            player: the player's id (the conversation's owner).
            context: fills the persona's ``{name}``, ``{description}``, ``{location}`` and
                ``{user}`` (the player's display name) for this turn.
            thinking_after: this turn's delay before the first thinking line (default: the
                NPC's).
            on_busy: for this line, instead of the NPC's ``on_busy``.

        Raises (here, before anything runs):
            InvalidParams: ``context`` has a key other than those four, or an empty text.
            NPCBusy: ``on_busy`` is ``reject`` and the player's last line is being answered
                (also raised by the iterator, if another talk got in first).
        """
        if not text.strip():
            raise InvalidParams("text must not be empty", param="text")
        persona, user = self.persona_for(context)
        reject = (on_busy or self.on_busy) == "reject"
        if reject and self.busy(player):
            raise NPCBusy(self.id, player)
        return self._talk(player, text, persona, user,
                          self.thinking_after if thinking_after is None else thinking_after,
                          reject)

    def persona_for(self, context: Mapping[str, str] | None) -> tuple[Persona, str | None]:
        """The persona with ``context`` filled in, and the player's display name.

        Raises:
            InvalidParams: an unknown key, or a value that is not a string.
        """
        context = dict(context or {})
        for key, value in context.items():
            if key not in CONTEXT_KEYS:
                raise InvalidParams(f"unknown context key {key!r}; use "
                                    + ", ".join(CONTEXT_KEYS), param="context")
            if not isinstance(value, str):
                raise InvalidParams(f"context.{key} must be a string", param="context")
        update = {field: context[key] for key, field in
                  (("name", "character"), ("description", "description"),
                   ("location", "location")) if key in context}
        persona = self.persona.model_copy(update=update) if update else self.persona
        return persona, context.get("user") or None

    async def _talk(self, player: str, text: str, persona: Persona, user: str | None,
                    thinking_after: float, reject: bool) -> AsyncGenerator[NPCEvent, None]:
        state = self._player(player)
        if reject and state.talks:
            raise NPCBusy(self.id, player)
        events: asyncio.Queue[NPCEvent] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        work = loop.create_task(self._answer(state, player, text, persona, user, events))
        state.talks.add(work)
        ticker = loop.create_task(self._think(persona, user, thinking_after, events))
        ended = False
        try:
            while True:
                event = await events.get()
                if not isinstance(event, Thinking):
                    ticker.cancel()
                yield event
                if isinstance(event, Reply | Failed):
                    ended = True
                    break
        finally:
            ticker.cancel()
            if not ended:  # the caller left early: the turn is cancelled and taken back
                work.cancel()
            await asyncio.gather(work, ticker, return_exceptions=True)
            state.talks.discard(work)
            self._forget_idle(player)

    async def _think(self, persona: Persona, user: str | None, after: float,
                     events: asyncio.Queue[NPCEvent]) -> None:
        lines = persona.thinking_lines
        if not lines:
            return
        await self._sleep(after)
        for i in itertools.count():
            events.put_nowait(Thinking(persona.fill(lines[i % len(lines)], user)))
            await self._sleep(self.thinking_every)

    async def _answer(self, state: _Player, player: str, text: str, persona: Persona,
                      user: str | None, events: asyncio.Queue[NPCEvent]) -> None:
        """One turn, under the player's lock; always ends by putting a Reply or Failed
        (even when the store fails, or a backend raises what it should not)."""
        try:
            async with state.lock:
                try:
                    events.put_nowait(await self._reply(state, player, text, persona, user,
                                                        events))
                finally:
                    await self._write_heard(state, player)
        except asyncio.CancelledError:
            events.put_nowait(Failed("cancelled", "", Cancelled(f"{self.id} stopped "
                                                                f"answering {player}")))
        except ChinwagError as e:
            log.warning("%s could not answer %s: %s", self.id, player, e)
            events.put_nowait(self._failed(persona, user, str(e), e))
        except Exception as e:
            log.exception("%s could not answer %s", self.id, player)
            events.put_nowait(self._failed(persona, user, f"{type(e).__name__}: {e}"))

    async def _reply(self, state: _Player, player: str, text: str, persona: Persona,
                     user: str | None, events: asyncio.Queue[NPCEvent]) -> Reply | Failed:
        """Generate the reply (the caller holds the player's lock); a turn that does not end
        in a reply is taken back before the lock is let go."""
        await self._write_heard(state, player)
        chatbot = await asyncio.to_thread(self._chatbot, persona, user, player)
        try:
            parts: list[str] = []
            async with _closing(self._runner(chatbot, text, f"user:{player}")) as pieces:
                async for piece in pieces:
                    parts.append(piece)
                    events.put_nowait(Token(piece))
        except BaseException:
            await _take_back(chatbot)
            raise
        reply = tidy_npc_reply("".join(parts), persona, user)
        if not reply:
            await _take_back(chatbot)
            return self._failed(persona, user, "the reply was empty")
        self._summarize_later(state, chatbot, player)
        return Reply(reply, chatbot.conversation_id)

    def _failed(self, persona: Persona, user: str | None, reason: str,
                error: ChinwagError | None = None) -> Failed:
        lines = persona.fallback_lines
        line = persona.fill(lines[next(self._fallbacks) % len(lines)], user)
        return Failed(reason, line, error)

    def _chatbot(self, persona: Persona, user: str | None, player: str) -> Chatbot:
        conversation = self.store.conversation_for(persona.name, player, scope=self.id)
        return self._factory(persona, user, conversation)

    def _summarize_later(self, state: _Player, chatbot: Chatbot, player: str) -> None:
        if not self._summarizes or not chatbot.summary_due():
            return

        async def summarize() -> None:
            try:
                async with state.lock:
                    try:
                        await asyncio.to_thread(chatbot.update_summary)
                    finally:
                        await self._write_heard(state, player)  # heard meanwhile
            except ChinwagError as e:
                log.warning("summary of %s's memory of %s not updated: %s", self.id, player, e)

        task = asyncio.get_running_loop().create_task(summarize())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- cancel and overhear ---------------------------------------------------------------

    def cancel(self, player: str) -> bool:
        """Stop answering ``player``: the generation stops and nothing of the turn is kept
        (their talks still waiting are cancelled too). Returns whether there was one."""
        found = self._players.get(player)
        if found is None or not found.talks:
            return False
        for task in found.talks:
            task.cancel()
        return True

    async def overhear(self, speaker: str, text: str, hearers: Sequence[str]) -> None:
        """Remember ``"speaker: text"`` in each hearer's conversation with this NPC, without
        answering; it is in front of that hearer's next line in the prompt. For a hearer
        whose turn is running, it is written when the turn ends.

        Raises:
            StoreError: the store cannot be written.
        """
        line = f"{speaker}: {text}"
        for hearer in hearers:
            state = self._player(hearer)
            state.heard.append(line)
            if not state.lock.locked():
                async with state.lock:
                    await self._write_heard(state, hearer)
            self._forget_idle(hearer)

    async def _write_heard(self, state: _Player, player: str) -> None:
        """Store the lines heard by ``player`` (the caller holds the player's lock)."""
        while state.heard:
            lines, state.heard[:] = list(state.heard), []
            await asyncio.to_thread(self._store_heard, player, lines)

    def _store_heard(self, player: str, lines: Sequence[str]) -> None:
        conversation = self.store.conversation_for(self.persona.name, player, scope=self.id)
        for line in lines:
            self.store.add_message(conversation.id, "system", line)

    def _player(self, player: str) -> _Player:
        found = self._players.get(player)
        if found is None:
            found = self._players[player] = _Player()
        return found

    def _forget_idle(self, player: str) -> None:
        found = self._players.get(player)
        if found is not None and not found.talks and not found.heard \
                and not found.lock.locked():
            del self._players[player]

    async def aclose(self) -> None:
        """Wait for the summaries still being written."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


@contextlib.asynccontextmanager
async def _closing(pieces: AsyncIterator[str]) -> AsyncGenerator[AsyncIterator[str], None]:
    """``pieces``, closed when the block ends (a runner's generation stops at once)."""
    try:
        yield pieces
    finally:
        close = getattr(pieces, "aclose", None)
        if close is not None:
            await close()


async def _take_back(chatbot: Chatbot) -> None:
    """Forget a turn that did not complete; a cancel meanwhile waits until it is forgotten
    (the next turn must not see it), then goes on."""
    done = asyncio.ensure_future(asyncio.to_thread(chatbot.take_back))
    cancelled = False
    while not done.done():
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            cancelled = True
    done.result()
    if cancelled:
        raise asyncio.CancelledError


def tidy_npc_reply(text: str, persona: Persona, user: str | None = None) -> str:
    """One speaker's words: without a leading ``Name:`` cue of the NPC, cut before a line
    that another speaker starts (``Traveller: ...``), whitespace trimmed."""
    text = text.strip()
    cue = f"{persona.display_name}:"
    if text.startswith(cue):
        text = text[len(cue):].lstrip()
    names = {persona.display_name, user or persona.user_name}
    kept: list[str] = []
    for line in text.split("\n"):
        speaker = _SPEAKER.match(line)
        if kept and speaker and (speaker.group(1) in names or _NAME.fullmatch(speaker.group(1))):
            break
        kept.append(line)
    return "\n".join(kept).strip()


_SPEAKER = re.compile(r"^\s*([^\s:][^:\n]{0,39}):\s")
_NAME = re.compile(r"[A-Z][\w'-]*(?: [A-Z][\w'-]*){0,2}")
