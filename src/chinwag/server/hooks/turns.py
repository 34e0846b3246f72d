"""What the three platform hooks share: a platform's message as a chat turn, answered now or
in the background, events seen once, long answers cut for a platform's limit.

A message becomes a normal chat turn of the persona, through ``ServerState.chat_turn`` like
every other route (the person's line in the fairness queue, metrics, the conversation's lock):
the conversation is the person's (``user``, e.g. ``slack:{team}:{user}``) in a thread or
channel (the store's ``scope``, e.g. ``slack:{channel}:{thread}``), so two people in one
channel, or one person in two threads, are remembered apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from chinwag.chat.persona import Persona
from chinwag.errors import BadSignature, PlatformError
from chinwag.server.hooks.platform import PlatformClient
from chinwag.server.state import ServerState

log = logging.getLogger("chinwag.hooks")

APOLOGY = "Sorry, I could not answer that just now. Please try again in a while."
"""Posted in the thread when generating an answer failed (the error goes to the log)."""
EMPTY = "…"
"""Posted when the model answered nothing (platforms refuse empty messages)."""


@dataclass(frozen=True)
class Said:
    """A persona's answer to one platform message.

    Attributes:
        text: the answer, stripped (may be empty).
        conversation_id: the stored conversation it went into.
        cut: the answer was stopped by a time limit before its end (Teams).
    """

    text: str
    conversation_id: str | None
    cut: bool = False


class SeenEvents:
    """Event ids seen in the last ``keep`` seconds (at most ``size``, oldest forgotten
    first), so that an event a platform sends again (Slack retries when it thinks an answer
    was lost) is answered once.

    Args:
        keep: seconds an id is remembered (Slack retries within about five minutes).
        size: most ids remembered.
        clock: monotonic seconds.
    """

    def __init__(self, keep: float = 3600.0, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=size, ttl=keep, timer=clock)

    def first(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen (within ``keep``), False after."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = True
        return True


def _names() -> TTLCache[str, str | None]:
    return TTLCache(maxsize=10_000, ttl=3600.0)


@dataclass
class Hooks:
    """The hooks' part of a running server (in ``app.state.hooks``).

    Attributes:
        state: the server's state.
        seen: the event ids answered already.
        clients: each platform's API client, by platform name, made on first use.
        names: people's display names looked up on a platform (``slack:{team}:{user}``; None:
            the platform would not say), kept for an hour.
    """

    state: ServerState
    seen: SeenEvents = field(default_factory=SeenEvents)
    clients: dict[str, PlatformClient] = field(default_factory=dict)
    names: TTLCache[str, str | None] = field(default_factory=_names)

    def client(self, platform: str, base_url: str, headers: dict[str, str]) -> PlatformClient:
        """The API client of ``platform`` (made the first time it is asked for)."""
        found = self.clients.get(platform)
        if found is None:
            found = self.clients[platform] = PlatformClient(base_url, headers)
        return found

    async def signed_body(self, request: Request, platform: str,
                          verify: Callable[[Mapping[str, str], bytes], None]) -> bytes:
        """The raw body of a platform's request, once ``verify`` (a ``signatures`` check,
        given the headers and the raw body, read first) has passed.

        Raises:
            BadSignature: what ``verify`` raises (counted as ``refused``).
        """
        body = await request.body()
        try:
            verify(request.headers, body)
        except BadSignature:
            self.count(platform, "refused")
            raise
        return body

    async def signed_json(self, request: Request, platform: str,
                          verify: Callable[[Mapping[str, str], bytes], None]) -> Any:
        """The JSON of ``signed_body``; None for a body that is not JSON.

        Raises:
            BadSignature: what ``verify`` raises (counted as ``refused``).
        """
        body = await self.signed_body(request, platform, verify)
        try:
            return json.loads(body)
        except ValueError:
            return None

    def count(self, platform: str, outcome: str) -> None:
        """Count one event of ``platform`` in ``/metrics``."""
        self.state.metrics.hook_events.labels(platform, outcome).inc()

    def persona(self, name: str | None) -> Persona:
        """The persona a platform's setting names (None: the server's ``persona``).

        Raises:
            UnknownPersona: no persona has that name.
        """
        return self.state.persona(name or self.state.settings.persona)

    async def say(self, persona: Persona, user: str, scope: str, text: str, *,
                  name: str | None = None, within: float | None = None,
                  written: Callable[[str], None] | None = None) -> Said:
        """The persona's answer to ``text`` from ``user`` in the conversation of ``scope``
        (see the module docstring), calling the person ``name`` in the prompt (their display
        name on the platform, ``speaker``; None: the persona's ``user_name``). ``within``:
        seconds the whole turn may take, waiting in the queue included; when they are up,
        the generation is cancelled and what was generated so far is the answer, with
        ``cut`` set. ``written`` is called with each piece of the answer as it comes.

        Raises:
            ChinwagError: what the turn raises (``ServerState.chat_turn``), logged first with
                the conversation's id.
        """
        chatbot = None
        pieces: list[str] = []
        limit = asyncio.timeout(within)
        try:
            conversation = await run_in_threadpool(self.state.store.conversation_for,
                                                   persona.name, user, scope=scope)
            chatbot = self.state.chatbot_in(persona, speaker(name), conversation)
            async with limit:
                async for piece in self.state.chat_turn(chatbot, text, f"user:{user}"):
                    pieces.append(piece)
                    if written is not None:
                        written(piece)
        except Exception as e:
            if isinstance(e, TimeoutError) and limit.expired() and chatbot is not None:
                return Said("".join(pieces).strip(), chatbot.conversation_id, cut=True)
            log.error("the answer to %s in conversation %s failed: %s: %s", user,
                      chatbot.conversation_id if chatbot is not None else "(none)",
                      type(e).__name__, e)
            raise
        return Said("".join(pieces).strip(), chatbot.conversation_id)

    async def answer(self, platform: str, persona: Persona, user: str, scope: str, text: str,
                     deliver: Callable[[str], Awaitable[None]], *,
                     name: str | None = None,
                     progress: Callable[[str], Awaitable[None]] | None = None,
                     every: float = 0.0) -> None:
        """Answer ``text`` (``say``) and hand the answer to ``deliver`` (which posts it to
        the platform); a failed turn delivers ``APOLOGY`` instead. With ``progress`` and
        ``every`` > 0, the answer so far is handed to ``progress`` every ``every`` seconds
        while it grows (a failed ``progress`` is logged and the answer goes on); ``deliver``
        comes after the last ``progress`` has returned. Never raises: it runs in the
        background, after the platform has had its acknowledgement."""
        pieces: list[str] = []
        done = asyncio.Event()

        async def show() -> None:
            assert progress is not None
            shown = ""
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), every)
                now = "".join(pieces).strip()
                if done.is_set() or not now or now == shown:
                    continue
                shown = now
                try:
                    await progress(now)
                except PlatformError as e:
                    log.warning("%s: showing the answer so far to %s failed: %s", platform,
                                user, e)

        updates = (asyncio.create_task(show()) if progress is not None and every > 0
                   else None)
        try:
            said = await self.say(persona, user, scope, text, name=name,
                                  written=pieces.append)
            reply, outcome = said.text or EMPTY, "answered"
        except Exception:
            reply, outcome = APOLOGY, "failed"
        finally:
            done.set()
            if updates is not None:
                await updates
        try:
            await deliver(reply)
        except PlatformError as e:
            log.error("%s: posting the answer to %s failed: %s", platform, user, e)
            outcome = "failed"
        self.count(platform, outcome)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the response has gone (the server waits for it when it stops)."""
        task = asyncio.get_running_loop().create_task(work)
        self.state.background.add(task)
        task.add_done_callback(self.state.background.discard)

    async def close(self) -> None:
        """Close the platforms' clients (after ``ServerState.close``, which waits for the
        answers still being posted)."""
        for client in self.clients.values():
            await client.close()
        self.clients.clear()


def fields(value: object) -> dict[str, Any]:
    """A JSON object of a platform's payload, or ``{}`` when the field is missing or not an
    object (a payload's shape is never trusted)."""
    return value if isinstance(value, dict) else {}


def speaker(name: object) -> str | None:
    """A platform's display name as a name in the prompt: one line, no colon (a transcript's
    speaker), at most 40 characters; None when nothing is left (the persona's
    ``user_name`` is used)."""
    if not isinstance(name, str):
        return None
    cleaned = " ".join(name.replace(":", " ").split())[:40].strip()
    return cleaned or None


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, for platforms that cap a message
    (Discord: 2,000). Each piece ends at the last line break in it, else the last space, else
    at the limit; the pieces joined are ``text`` again.

    Raises:
        ValueError: ``limit`` < 1.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = window.rfind("\n") + 1 or window.rfind(" ") + 1 or limit
        pieces.append(text[:cut])
        text = text[cut:]
    if text or not pieces:
        pieces.append(text)
    return pieces


def hooks_of(request: Any) -> Hooks:
    """The ``Hooks`` of the app serving ``request``."""
    hooks: Hooks = request.app.state.hooks
    return hooks
