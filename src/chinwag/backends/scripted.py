"""A backend that replays queued replies and records every request.

For unit tests of logic around the model (memory, personas, the CLI, game code) and for people
testing their own code without a model, in the manner of httpx's ``MockTransport`` and
simonw/llm's ``MockModel``::

    backend = ScriptedBackend()
    backend.enqueue("Hello there!")
    chatbot = Chatbot(backend, persona)
    assert "".join(chatbot.send("Hi")) == "Hello there!"
    assert backend.requests[0].prompt.endswith("Assistant:")
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from chinwag.backends.base import (
    BackendConfig,
    Capabilities,
    LanguageBackend,
    ModelInfo,
    picked_choice,
)
from chinwag.errors import BackendError, ContextOverflow
from chinwag.json_schema import check_json_schema
from chinwag.prompting import resolve_chat_format
from chinwag.prompting.base import ChatFormat, Speakers
from chinwag.prompting.transcript import TranscriptFormat
from chinwag.types import (
    Choice,
    Done,
    EventStream,
    Message,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
    Usage,
)

if TYPE_CHECKING:
    from chinwag.models import Progress
    from chinwag.settings import Settings

_PIECES = re.compile(r"\s*\S+|\s+")


def _certain(piece: str, n: int) -> TokenLogprob:
    """A scripted token's log-probability: certain (0.0), itself its only alternative (so
    ``top`` has at most one entry, whatever ``n`` asks)."""
    raw = tuple(piece.encode())
    return TokenLogprob(piece, 0.0, raw, (TokenLogprob(piece, 0.0, raw),)[:n])


class ScriptedLLM(BackendConfig):
    """An LLM config of queued replies, for tests and demos without a model."""

    backend: Literal["scripted"]
    replies: list[str] = Field(default_factory=list)
    default_reply: str = "..."

    def build(self, settings: Settings, *, base_dir: Path | None = None,
              progress: Progress | None = None) -> ScriptedBackend:
        return ScriptedBackend(**self.arguments(exclude=("model_id", "chat_format")),
                               chat_format=resolve_chat_format(model_template=None,
                                                               requested=self.chat_format))


@dataclass(frozen=True)
class Request:
    """One call the scripted backend received.

    Attributes:
        prompt: the prompt text (for ``choose``: the rendered chat).
        params: the sampling settings (None for ``choose``).
        options: the options of a ``choose`` call, else empty.
    """

    prompt: str
    params: SamplingParams | None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Failure:
    message: str
    partial: str


class ScriptedBackend(LanguageBackend):
    """Replays queued replies word by word; records every request in ``requests``.

    Token counting is a word count (whitespace-separated pieces), which keeps tests readable.
    The chat format is the one given, whatever a persona asks for (``fixed_format``).
    With nothing queued, ``generate`` answers ``default_reply``; ``enqueue_failure`` queues a
    model that fails mid-answer. A ``json_schema`` is checked for
    validity (``SchemaError``) and the scripted reply is replayed as it is: queue the JSON the
    model should produce, or broken JSON to test what happens when a model is cut short.
    ``presence_penalty``, ``frequency_penalty`` and ``logit_bias`` change nothing in a
    scripted reply; with ``logprobs``, each word comes with a certain (0.0) log-probability.

    Args:
        replies: replies to queue at once.
        context_length: the pretend context window, in (word) tokens.
        default_reply: what to answer when the queue is empty.
        chat_format: how ``chat`` renders messages (default: the transcript format).
    """

    capabilities = Capabilities(json_schema=True, choose=True, exact_token_count=True,
                                tools="constrained")
    fixed_format = True

    def __init__(self, replies: Iterable[str] = (), *, context_length: int = 2048,
                 default_reply: str = "...", chat_format: ChatFormat | None = None) -> None:
        self._replies: deque[str | _Failure] = deque(replies)
        self._choices: deque[int] = deque()
        self._context_length = context_length
        self.default_reply = default_reply
        self.chat_format = chat_format or TranscriptFormat()
        self.requests: list[Request] = []

    def enqueue(self, *replies: str) -> None:
        """Queue replies, answered in order by later ``generate``/``chat`` calls."""
        self._replies.extend(replies)

    def enqueue_failure(self, message: str = "the scripted model failed",
                        partial: str = "") -> None:
        """Queue a failure: the next ``generate`` replays ``partial`` (word by word, possibly
        nothing), then raises ``BackendError(message)``, as a model that fails mid-answer."""
        self._replies.append(_Failure(message, partial))

    def enqueue_choice(self, index: int) -> None:
        """Queue the index the next ``choose`` call returns (default: 0); it is scored 0,
        the other options -inf."""
        self._choices.append(index)

    @property
    def context_length(self) -> int:
        return self._context_length

    def count_tokens(self, text: str) -> int:
        return len(_PIECES.findall(text))

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        check_json_schema(params.json_schema)
        prompt_tokens = self.count_tokens(prompt)
        if prompt_tokens >= self._context_length:
            raise ContextOverflow(prompt_tokens, self._context_length)
        self.requests.append(Request(prompt=prompt, params=params))
        reply = self._replies.popleft() if self._replies else self.default_reply
        if isinstance(reply, _Failure):
            return self._fail(reply)
        return self._stream(reply, params, prompt_tokens)

    def _fail(self, failure: _Failure) -> EventStream:
        for piece in _PIECES.findall(failure.partial):
            yield TokenEvent(piece)
        raise BackendError(failure.message)

    def _stream(self, reply: str, params: SamplingParams, prompt_tokens: int) -> EventStream:
        cut = min((reply.find(s) for s in params.stop if s in reply), default=-1)
        finish: str = "stop"
        if cut >= 0:
            reply = reply[:cut]
        pieces = _PIECES.findall(reply)
        if len(pieces) > params.max_tokens:
            pieces, finish = pieces[: params.max_tokens], "length"
        for piece in pieces:
            yield TokenEvent(piece, () if params.logprobs is None else (
                _certain(piece, params.logprobs),))
        yield Done(finish, Usage(prompt_tokens, len(pieces)))  # type: ignore[arg-type]

    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        prompt = self.render(messages, speakers).text
        self.requests.append(Request(prompt=prompt, params=None, options=tuple(options)))
        return picked_choice(options, self._choices.popleft() if self._choices else 0)

    def info(self) -> ModelInfo:
        return ModelInfo(name="scripted", n_ctx=self._context_length,
                         chat_format=self.chat_format.name)
