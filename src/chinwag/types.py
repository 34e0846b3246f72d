"""Plain data that crosses chinwag's layers: messages, sampling settings, stream events.

These are dataclasses (data inside the process); pydantic models wrap them at the edges
(YAML files, settings, HTTP bodies).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from chinwag.errors import InvalidParams

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Message:
    """One message of a chat, in the OpenAI shape.

    Attributes:
        role: ``system``, ``user`` or ``assistant``.
        content: the text.
    """

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidParams(f"role must be one of {', '.join(ROLES)}, not {self.role!r}",
                                param="role")


@dataclass(frozen=True)
class SamplingParams:
    """How to sample a reply. Names and defaults follow llama.cpp and the OpenAI API.

    Each field says what it does in its ``metadata["description"]`` (the command line's
    ``--help`` shows them).
    """

    max_tokens: int = field(default=256, metadata={
        "description": "Most tokens to generate (>= 1)."})
    temperature: float = field(default=0.8, metadata={
        "description": "Softmax temperature (>= 0; 0 = greedy, always the most likely token)."})
    top_k: int = field(default=40, metadata={
        "description": "Keep only the k most likely tokens (0 = off)."})
    top_p: float = field(default=0.95, metadata={
        "description": "Nucleus sampling: keep the smallest set of tokens with this much "
        "probability (0 < p <= 1)."})
    min_p: float = field(default=0.05, metadata={
        "description": "Drop tokens less likely than min_p times the most likely one (0 = off)."})
    repeat_penalty: float = field(default=1.1, metadata={
        "description": "CTRL-style penalty on tokens seen in the last repeat_last_n (1 = off)."})
    repeat_last_n: int = field(default=64, metadata={
        "description": "How many recent tokens the repeat penalty looks at."})
    stop: tuple[str, ...] = field(default=(), metadata={
        "description": "Strings that end the reply; they are not included in it."})
    seed: int | None = field(default=None, metadata={
        "description": "RNG seed: the same seed, settings and prompt give the same text. "
        "Default: random."})
    json_schema: dict[str, Any] | None = field(default=None, metadata={
        "description": "When set, the output is constrained to JSON valid against this schema."})
    cache_prompt: bool = field(default=True, metadata={
        "description": "Reuse the KV state of an earlier prompt that shares a prefix with this "
        "one (llama.cpp's server option of the same name, on by default there too). As "
        "llama.cpp warns, logits are not bit-identical across batch shapes, so with it the "
        "same seed may give a different text; turn it off for reproducible output."})

    def __post_init__(self) -> None:
        if isinstance(self.stop, str | list):
            object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str)
                               else tuple(self.stop))
        self._check()

    def _check(self) -> None:
        def bad(param: str, why: str) -> InvalidParams:
            return InvalidParams(f"{param} {why}, got {getattr(self, param)!r}", param=param)

        for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
                raise bad(name, "must be a number")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise bad("max_tokens", "must be an integer >= 1")
        if self.temperature < 0:
            raise bad("temperature", "must be >= 0")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top_k", "must be an integer >= 0")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if not 0 <= self.min_p <= 1:
            raise bad("min_p", "must be in [0, 1]")
        if self.repeat_penalty <= 0:
            raise bad("repeat_penalty", "must be > 0")
        if not isinstance(self.repeat_last_n, int) or self.repeat_last_n < 0:
            raise bad("repeat_last_n", "must be an integer >= 0")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise bad("seed", "must be a non-negative integer")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise bad("stop", "must be non-empty strings")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise bad("json_schema", "must be a JSON object")

    def with_(self, **changes: Any) -> SamplingParams:
        """Return a copy with some fields changed (validated again).

        Raises:
            InvalidParams: an unknown field name or a value out of range.
        """
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise InvalidParams(f"unknown sampling parameter(s): {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(sorted(known))}", param=sorted(unknown)[0])
        return replace(self, **changes)

    @staticmethod
    def names() -> list[str]:
        """The names of every sampling parameter, in declaration order."""
        return [f.name for f in fields(SamplingParams)]


@dataclass(frozen=True)
class ContextPiece:
    """Knowledge put before a question: a page, a feed, a collection's best chunks, or text
    the user gave with ``|CONTEXT|``. It goes in the system prompt (``chat.memory``), and in a
    stored conversation it is kept with the conversation, pinned like facts.

    Attributes:
        key: what identifies it within a conversation (a source's name, a URL, or
            ``context:`` and a hash of the text); a newer piece with the same key replaces it.
        name: the source's name as shown to people (the URL for an ad-hoc page,
            ``context`` for literal text).
        kind: ``page``, ``feed``, ``collection`` or ``text``.
        url: where it came from (the final URL after redirects), or None.
        title: the page's or feed's title, or None.
        describe: the sentence put before the text ("Today's weather in Limbo:").
        text: the content as it goes in the prompt (within its budget).
        tokens: ``text``'s length, tokens of the model it was measured for.
        fetched_at: when it was fetched, unix seconds, or None (literal text).
    """

    key: str
    name: str
    kind: str
    text: str
    tokens: int
    url: str | None = None
    title: str | None = None
    describe: str = ""
    fetched_at: float | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation, as OpenAI reports them.

    Attributes:
        prompt_tokens: tokens in the prompt.
        completion_tokens: tokens generated.
        cached_tokens: prompt tokens whose KV state was reused, not computed again
            (OpenAI's ``usage.prompt_tokens_details.cached_tokens``).
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenEvent:
    """A piece of streamed text: one or more tokens, decoded to complete UTF-8 characters."""

    text: str


@dataclass(frozen=True)
class Done:
    """The last event of every stream.

    Attributes:
        finish_reason: ``stop`` (end of text or a stop string), ``length`` (max_tokens reached),
            ``cancelled`` (the caller stopped it).
        usage: prompt and completion token counts.
    """

    finish_reason: FinishReason
    usage: Usage


Event = TokenEvent | Done
EventStream = Iterator[Event]


@dataclass(frozen=True)
class Choice:
    """The result of ``choose``: the option the model finds most likely.

    Attributes:
        index: position of the chosen option in the list given.
        option: the chosen option's text.
        logprob: total natural-log probability of the option's tokens after the prompt.
        scores: the total log-probability of every option, in the order given.
    """

    index: int
    option: str
    logprob: float
    scores: list[float] = field(default_factory=list)


def collect(events: EventStream) -> tuple[str, Done]:
    """Drain a stream into its full text and its closing ``Done`` event.

    Raises:
        BackendError: the stream ended without a ``Done`` event.
    """
    from chinwag.errors import BackendError

    parts: list[str] = []
    for event in events:
        if isinstance(event, Done):
            return "".join(parts), event
        parts.append(event.text)
    raise BackendError("the stream ended without a Done event")
