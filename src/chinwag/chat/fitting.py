"""Fitting a chat into the context window, and tidying a streamed reply.

Shared by ``Chatbot`` (the CLI, scripts) and the server's chat endpoints.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass

from chinwag.backends.base import LanguageBackend
from chinwag.errors import ContextOverflow
from chinwag.prompting.base import ChatFormat, Prompt, Speakers
from chinwag.types import Done, Event, Message, TokenEvent


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
                 reserve: int, drop: bool = True) -> Fitted:
    """Render ``preamble + messages`` so that the prompt plus ``reserve`` tokens fit in the
    context window, leaving out the oldest non-system messages of ``messages`` if needed.

    A dropped user message takes the assistant reply that follows it along. The preamble
    (system prompt, examples) and the last message are never dropped. When even the shortest
    prompt leaves less than ``reserve`` tokens but still fits, it is returned: the reply then
    gets what room is left.

    Args:
        reserve: tokens to keep free for the reply (usually ``max_tokens``).
        drop: when False, nothing is left out (OpenAI's default behaviour).

    Raises:
        ContextOverflow: the prompt does not fit (with ``drop``: even with nothing left out
            that may be; the error gives both token counts and the reserve).
    """
    n_ctx = backend.context_length
    kept = list(messages)
    dropped = 0
    while True:
        prompt = backend.render([*preamble, *kept], speakers, chat_format)
        n = backend.count_tokens(prompt.text)
        if n + reserve <= n_ctx:
            return Fitted(prompt, n, dropped)
        first = next((i for i, m in enumerate(kept[:-1]) if m.role != "system"), None)
        if not drop or first is None:
            if n < n_ctx and drop:
                return Fitted(prompt, n, dropped)
            raise ContextOverflow(n, n_ctx, reserve)
        count = 2 if (kept[first].role == "user" and first + 1 < len(kept) - 1
                      and kept[first + 1].role == "assistant") else 1
        del kept[first:first + count]
        dropped += count


class ReplyTrimmer:
    """Strips the whitespace around a reply that arrives in pieces.

    A transcript prompt ends with ``"Bertha:"``, so the reply starts with a space; and a reply
    cut at a stop string often ends with one. ``feed`` drops leading whitespace and holds
    trailing whitespace back until more text follows it.
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


def tidy_reply(events: Iterable[Event]) -> Generator[Event, None, None]:
    """Pass a reply stream on without the whitespace around the reply (``ReplyTrimmer``).
    The ``Done`` event passes unchanged."""
    trimmer = ReplyTrimmer()
    for event in events:
        if isinstance(event, Done):
            yield event
            return
        out = trimmer.feed(event.text)
        if out:
            yield TokenEvent(out)
