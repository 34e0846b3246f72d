"""A non-blocking client of chinwag's NPC API for Twisted programs (Evennia runs on Twisted).

`NpcClient.talk` posts a player's line to ``POST /npc/{persona}/talk`` with ``"stream": true``
and reads the ``text/event-stream`` answer as it arrives: each ``thinking`` line goes to a
callback at once, and the Deferred fires at the end with a `TalkResult` (the reply, or the error
and the persona's fallback line). A server error, a network error or the time limit never
errback: they come back as ``TalkResult.error``. Only ``Deferred.cancel()`` (the player left)
ends a talk with ``CancelledError``; it closes the connection, which stops the generation.

Events are read in both shapes: ``event: NAME`` then ``data: JSON``, or a bare
``data: {"type": NAME, ...}``. A non-streamed JSON answer (``{"reply", "conversation"}``) is
read too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from twisted.internet import defer, protocol
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    PotentialDataLoss,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

DEFAULT_TIMEOUT = 60.0  # seconds, for a whole talk: waiting, thinking and the reply

EventHandler = Callable[[str, dict[str, Any]], None]


@dataclass
class TalkResult:
    """What one talk came to.

    Attributes:
        reply: the NPC's reply, or None when the talk failed.
        conversation: the server's conversation id, when it gave one.
        error: why the talk failed (a server error's message, a network error, the time limit).
        fallback_line: the persona's line for a failure, when the server sent one.
        thinking: the thinking lines shown while waiting, in order.
    """

    reply: str | None = None
    conversation: str | None = None
    error: str | None = None
    fallback_line: str | None = None
    thinking: list[str] = field(default_factory=list)


class ApiError(Exception):
    """A non-2xx answer from the NPC API, with its error body's message and fallback line."""

    def __init__(self, status: int, message: str, fallback_line: str | None = None) -> None:
        super().__init__(f"chinwag answered {status}: {message}")
        self.status = status
        self.message = message
        self.fallback_line = fallback_line


def error_parts(body: Any) -> tuple[str | None, str | None]:
    """The message and fallback line of an error body or event
    (``{"error": {"message", ...}, "fallback_line": ...}``); None for each part missing."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    fallback = body.get("fallback_line")
    return (str(message) if message else None,
            fallback if isinstance(fallback, str) and fallback else None)


def _plain_cancel(failure: Failure) -> Failure:
    """A request cancelled before its answer came fails as ``ResponseNeverReceived`` (or
    ``ResponseFailed``) around a ``CancelledError``: make it the ``CancelledError`` itself, so
    that ``addTimeout`` and the callers see a cancel as one."""
    reasons = getattr(failure.value, "reasons", None) or []
    if failure.check(ResponseNeverReceived, ResponseFailed, RequestTransmissionFailed) and any(
            reason.check(defer.CancelledError) for reason in reasons):
        raise defer.CancelledError()
    return failure


@implementer(IBodyProducer)
class _JsonBody:
    """A request body of JSON, written at once."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = json.dumps(body).encode()
        self.length = len(self.body)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _BodyReader(protocol.Protocol):
    """Reads a response body: with ``on_event``, as server-sent events while they arrive
    (`finished` then fires with ``b""``); without, whole (`finished` fires with the bytes).
    Cancelling `finished` closes the connection."""

    def __init__(self, on_event: EventHandler | None) -> None:
        self.on_event = on_event
        self.buffer = b""
        self.finished: defer.Deferred[bytes] = defer.Deferred(self._cancel)
        self._cancelled = False

    def _cancel(self, _: defer.Deferred[bytes]) -> None:
        self._cancelled = True  # connectionLost must not fire `finished` in place of cancel()
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if self.on_event is None:
            return
        self.buffer = self.buffer.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            self._dispatch(block)

    def _dispatch(self, block: bytes) -> None:
        name, data_lines = "message", []
        for line in block.decode("utf-8", "replace").split("\n"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value.strip()
            elif key == "data":
                data_lines.append(value)
        try:
            data = json.loads("\n".join(data_lines)) if data_lines else None
        except ValueError:
            return  # "[DONE]" or a comment: nothing for an NPC
        if not isinstance(data, dict) or self.on_event is None:
            return
        if name == "message" and isinstance(data.get("type"), str):
            name = data["type"]
        self.on_event(name, data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._cancelled or self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            if self.on_event is not None:
                if self.buffer.strip():
                    self._dispatch(self.buffer)
                self.finished.callback(b"")
            else:
                self.finished.callback(self.buffer)
        else:
            self.finished.errback(reason)


class NpcClient:
    """chinwag's NPC API over Twisted's `Agent`: nothing blocks the reactor.

    Args:
        url: the chinwag server, e.g. ``"http://127.0.0.1:8000"``.
        api_key: sent as ``Authorization: Bearer KEY`` when given.
        timeout: seconds a call may take in all (a talk: until its reply).
        reactor: the reactor (a `task.Clock`-driven one in tests); Twisted's global one if None.
    """

    def __init__(self, url: str, *, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.reactor = reactor
        self.headers = {"Content-Type": ["application/json"],
                        "Accept": ["text/event-stream, application/json"]}
        if api_key:
            self.headers["Authorization"] = [f"Bearer {api_key}"]
        pool = HTTPConnectionPool(reactor)
        self.agent = Agent(reactor, pool=pool)

    def talk(self, persona: str, *, npc: str, player: str, text: str,
             context: dict[str, str], thinking_after: float = 2.0,
             on_thinking: Callable[[str], None] | None = None) -> defer.Deferred[TalkResult]:
        """Say ``text`` to an NPC and read its answer as it streams.

        Args:
            persona: the persona's name (``/npc/{persona}/talk``).
            npc: the NPC's id (one conversation per NPC and player).
            player: the player's id.
            text: what the player said.
            context: ``{"name", "description", "location", "user"}`` for the prompt.
            thinking_after: seconds before the server sends a thinking line.
            on_thinking: called with each thinking line as it arrives.

        Returns:
            A Deferred firing with a `TalkResult`; it errbacks only with ``CancelledError``,
            when cancelled.
        """
        result = TalkResult()

        def on_event(name: str, data: dict[str, Any]) -> None:
            if name == "thinking" and isinstance(data.get("line"), str):
                result.thinking.append(data["line"])
                if on_thinking is not None:
                    on_thinking(data["line"])
            elif name == "reply":
                result.reply = str(data.get("text") or "")
                result.conversation = data.get("conversation")
            elif name == "error":
                result.error, result.fallback_line = error_parts(data)
                result.error = result.error or "chinwag sent an error"

        def read_json(body: bytes) -> TalkResult:
            if body:  # a non-streamed answer: {"reply", "conversation"}
                answer = json.loads(body)
                result.reply = str(answer.get("reply") or "")
                result.conversation = answer.get("conversation")
            if result.reply is None and result.error is None:
                result.error = "chinwag ended the answer without a reply"
            return result

        body = {"npc": npc, "player": player, "text": text, "context": context,
                "thinking_after": thinking_after, "stream": True}
        done: defer.Deferred[Any] = self._post(f"/npc/{quote(persona, safe='')}/talk", body,
                                               on_event)
        done.addCallback(read_json)
        done.addErrback(self._as_result, result)
        return done

    def overhear(self, persona: str, *, npc: str, speaker: str, text: str,
                 hearers: list[str]) -> defer.Deferred[bool]:
        """Tell an NPC what ``speaker`` said near it. Fires True when the server took it,
        False on any failure (an NPC overhearing is not worth a player-visible error)."""
        body = {"npc": npc, "speaker": speaker, "text": text, "hearers": hearers}
        return self._fire_and_forget(f"/npc/{quote(persona, safe='')}/overhear", body)

    def cancel(self, persona: str, *, npc: str, player: str) -> defer.Deferred[bool]:
        """Ask the server to stop an NPC's answer to ``player``. Fires True or False."""
        return self._fire_and_forget(f"/npc/{quote(persona, safe='')}/cancel",
                                     {"npc": npc, "player": player})

    def _fire_and_forget(self, path: str, body: dict[str, Any]) -> defer.Deferred[bool]:
        done: defer.Deferred[Any] = self._post(path, body, None)
        done.addCallbacks(lambda _: True, lambda _: False)
        return done

    def _post(self, path: str, body: dict[str, Any],
              on_event: EventHandler | None) -> defer.Deferred[bytes]:
        """POST ``body``; fire with the response's bytes (``b""`` once an event stream has
        been read to its end through ``on_event``), or errback: `ApiError` for a non-2xx
        answer, ``TimeoutError`` past `timeout`, the network's error otherwise."""
        requested: defer.Deferred[IResponse] = self.agent.request(
            b"POST", (self.url + path).encode(), Headers(self.headers), _JsonBody(body))

        def read(response: Any) -> defer.Deferred[bytes]:  # an IResponse
            kind = b"".join(response.headers.getRawHeaders(b"content-type", [b""]))
            streamed = response.code == 200 and kind.startswith(b"text/event-stream")
            reader = _BodyReader(on_event if streamed else None)
            response.deliverBody(reader)
            if 200 <= response.code < 300:
                return reader.finished
            return reader.finished.addCallback(self._raise_api_error, response.code)

        done = requested.addCallback(read)
        done.addErrback(_plain_cancel)
        done.addTimeout(self.timeout, self.reactor)
        return done

    @staticmethod
    def _raise_api_error(body: bytes, status: int) -> bytes:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        message, fallback = error_parts(parsed)
        raise ApiError(status, message or body.decode("utf-8", "replace")[:200], fallback)

    def _as_result(self, failure: Failure, result: TalkResult) -> TalkResult | Failure:
        if failure.check(defer.CancelledError):
            return failure
        if failure.check(defer.TimeoutError):
            result.error = f"no answer from chinwag within {self.timeout:g} s"
        elif isinstance(failure.value, ApiError):
            result.error = failure.value.message
            result.fallback_line = failure.value.fallback_line
        else:
            result.error = failure.getErrorMessage() or repr(failure.value)
        return result
