"""Fitting a chat into the context window, and tidying a streamed reply.

Shared by ``Chatbot`` (the CLI, scripts) and the server's chat endpoints.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import overload

from chinwag.backends.base import LanguageBackend
from chinwag.errors import ContextOverflow
from chinwag.prompting.base import ChatFormat, Prompt, Speakers
from chinwag.types import ChatEvent, Done, Event, Message, TokenEvent


@dataclass(frozen=True)
class Fitted:
    """A chat rendered to fit the context window.

    Attributes:
        prompt: the rendered prompt.
        prompt_tokens: its length in tokens.
        dropped: how many messages had to be left out (oldest first).
    """

    prompt: Prompt
    prompt_tokens: int
    dropped: int


def fit_messages(backend: LanguageBackend, preamble: Sequence[Message],
                 messages: Sequence[Message], *, speakers: Speakers, chat_format: ChatFormat,
                 reserve: int, drop: bool = True,
                 counts: Sequence[int | None] | None = None) -> Fitted:
    """Render ``preamble + messages`` so that the prompt plus ``reserve`` tokens fit in the
    context window, leaving out the oldest non-system messages of ``messages`` if needed.

    A dropped user message takes the assistant reply that follows it along. The preamble
    (system prompt, examples), system messages and the last message are never dropped. When
    even the shortest prompt leaves less than ``reserve`` tokens but still fits, it is
    returned: the reply then gets what room is left.

    The cost is a few renders whatever the history's length: each message's cost is estimated
    from its content's token count (``counts``, e.g. stored with the message, else counted
    here) plus the chat format's average per-message overhead, measured on the full render;
    enough of the oldest messages are dropped at once, and the result is checked by rendering
    it (dropping one more exchange at a time while it still does not fit).

    Args:
        reserve: tokens to keep free for the reply (usually ``max_tokens``).
        drop: when False, nothing is left out (OpenAI's default behaviour).
        counts: the content token count of each message of ``messages`` (None: unknown).

    Raises:
        ContextOverflow: the prompt does not fit (with ``drop``: even with nothing left out
            that may be; the error gives both token counts and the reserve).
    """
    n_ctx = backend.context_length
    budget = n_ctx - reserve

    def render(kept: Sequence[Message]) -> tuple[Prompt, int]:
        prompt = backend.render([*preamble, *kept], speakers, chat_format)
        return prompt, backend.count_tokens(prompt.text)

    prompt, n = render(messages)
    if n <= budget:
        return Fitted(prompt, n, 0)
    units = _droppable_units(messages)
    if not drop or not units:
        if drop and n < n_ctx:
            return Fitted(prompt, n, 0)
        raise ContextOverflow(n, n_ctx, reserve)

    droppable = [i for unit in units for i in unit]
    fixed = [m for i, m in enumerate(messages) if i not in set(droppable)]
    floor_prompt, floor = render(fixed)
    if floor > budget:  # nothing but the preamble, system messages and the last message
        if floor < n_ctx:
            return Fitted(floor_prompt, floor, len(droppable))
        raise ContextOverflow(floor, n_ctx, reserve)
    content = [c if c is not None else backend.count_tokens(messages[i].content)
               for i, c in ((i, counts[i] if counts is not None else None) for i in droppable)]
    cut = _units_to_cut(units, droppable, content, excess=n - budget,
                        overhead=max(0.0, (n - floor - sum(content)) / len(droppable)))
    while True:
        gone = {i for unit in units[:cut] for i in unit}
        kept = [m for i, m in enumerate(messages) if i not in gone]
        prompt, n = render(kept)
        if n <= budget or cut == len(units):
            return Fitted(prompt, n, len(gone))
        cut += 1


def _units_to_cut(units: Sequence[Sequence[int]], droppable: Sequence[int],
                  content: Sequence[int], *, excess: float, overhead: float) -> int:
    """How many of the oldest ``units`` to drop to shed ``excess`` tokens, by estimate: each
    message costs its content's tokens plus the format's average ``overhead`` per message."""
    cost = dict(zip(droppable, (c + overhead for c in content), strict=True))
    cut = 0
    while cut < len(units) and excess > 0:
        excess -= sum(cost[i] for i in units[cut])
        cut += 1
    return cut


def _droppable_units(messages: Sequence[Message]) -> list[list[int]]:
    """Indices of the messages that may be dropped, grouped oldest first into what goes
    together: a user message with the assistant reply right after it, or a lone message.
    System messages and the last message are never in a unit."""
    units: list[list[int]] = []
    last = len(messages) - 1
    i = 0
    while i < last:
        if messages[i].role == "system":
            i += 1
            continue
        if (messages[i].role == "user" and i + 1 < last
                and messages[i + 1].role == "assistant"):
            units.append([i, i + 1])
            i += 2
        else:
            units.append([i])
            i += 1
    return units


class ReplyTrimmer:
    """Strips the whitespace around a reply that arrives in pieces.

    A transcript prompt ends with ``"Bertha:"``, so the reply starts with a space; and a reply
    cut at a stop string often ends with one. ``feed`` drops leading whitespace and holds
    trailing whitespace back until more text follows it. A token event's log-probability
    records pass on with it, on an event of no text when its text was dropped or held back,
    so every token's record is reported once.
    """

    def __init__(self) -> None:
        self._started = False
        self._pending = ""

    def feed(self, piece: str) -> str:
        """The text to pass on for ``piece`` (may be empty)."""
        if not self._started:
            piece = piece.lstrip()
            self._started = bool(piece)
        if not piece:
            return ""
        body = piece.rstrip()
        out = self._pending + body
        self._pending = piece[len(body):]
        return out

    @overload
    def tidy(self, event: Event) -> Event | None: ...

    @overload
    def tidy(self, event: ChatEvent) -> ChatEvent | None: ...

    def tidy(self, event: ChatEvent) -> ChatEvent | None:
        """The event to pass on for ``event``: a token event with its text fed through
        ``feed`` (None when nothing is to be passed on yet), any other (``Done``, a tool
        call's) unchanged."""
        if not isinstance(event, TokenEvent):
            return event
        out = self.feed(event.text)
        # log-probabilities go on at once: a whitespace-only token's on an event of no text
        return TokenEvent(out, event.logprobs) if out or event.logprobs else None


def tidy_reply(events: Iterable[Event]) -> Generator[Event, None, None]:
    """Pass a reply stream on without the whitespace around the reply (``ReplyTrimmer``).
    The ``Done`` event passes unchanged and ends the stream."""
    trimmer = ReplyTrimmer()
    for event in events:
        tidied = trimmer.tidy(event)
        if tidied is not None:
            yield tidied
        if isinstance(event, Done):
            return
