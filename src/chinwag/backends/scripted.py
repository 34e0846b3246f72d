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

from chinwag.backends.base import Capabilities, LanguageBackend, ModelInfo, check_json_schema
from chinwag.errors import BackendError, ContextOverflow, InvalidParams
from chinwag.prompting.base import ChatFormat, Speakers
from chinwag.prompting.transcript import TranscriptFormat
from chinwag.types import Choice, Done, EventStream, Message, SamplingParams, TokenEvent, Usage

_PIECES = re.compile(r"\s*\S+|\s+")


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
    With nothing queued, ``generate`` answers ``default_reply``; ``enqueue_failure`` queues a
    model that fails mid-answer. A ``json_schema`` is checked for
    validity (``SchemaError``) and the scripted reply is replayed as it is: queue the JSON the
    model should produce, or broken JSON to test what happens when a model is cut short.

    Args:
        replies: replies to queue at once.
        context_length: the pretend context window, in (word) tokens.
        default_reply: what to answer when the queue is empty.
        chat_format: how ``chat`` renders messages (default: the transcript format).
    """

    capabilities = Capabilities(json_schema=True, choose=True, exact_token_count=True)

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
        """Queue the index the next ``choose`` call returns (default: 0)."""
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
            yield TokenEvent(piece)
        yield Done(finish, Usage(prompt_tokens, len(pieces)))  # type: ignore[arg-type]

    def choose(self, messages: Sequence[Message], options: Sequence[str],
               *, speakers: Speakers = Speakers()) -> Choice:
        if not options:
            raise InvalidParams("choose needs at least one option", param="options")
        prompt = self.render(messages, speakers).text
        self.requests.append(Request(prompt=prompt, params=None, options=tuple(options)))
        index = self._choices.popleft() if self._choices else 0
        scores = [0.0 if i == index else -10.0 for i in range(len(options))]
        return Choice(index=index, option=options[index], logprob=0.0, scores=scores)

    def info(self) -> ModelInfo:
        return ModelInfo(name="scripted", n_ctx=self._context_length,
                         chat_format=self.chat_format.name)
