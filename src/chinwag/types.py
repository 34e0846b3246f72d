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

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]


@dataclass(frozen=True)
class ToolCall:
    """A call a model made to a tool (OpenAI's ``tool_calls`` item).

    Attributes:
        id: the call's id (``call_...``); a ``tool`` message answers it by this id.
        name: the tool's name.
        arguments: the arguments, as JSON text (OpenAI sends them as a string).
    """

    id: str
    name: str
    arguments: str

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's shape: ``{"id", "type": "function", "function": {"name",
        "arguments"}}``."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Message:
    """One message of a chat, in the OpenAI shape.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool`` (a tool's result).
        content: the text.
        tool_calls: the calls an assistant message made (``chinwag.tools``).
        tool_call_id: for a ``tool`` message, the call it answers.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidParams(f"role must be one of {', '.join(ROLES)}, not {self.role!r}",
                                param="role")


MAX_LOGPROBS = 20
"""Most alternatives ``SamplingParams.logprobs`` may ask for (OpenAI's ``top_logprobs``
limit; llama-server allows as many for ``/v1/completions``' ``logprobs``)."""


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
    presence_penalty: float = field(default=0.0, metadata={
        "description": "Subtracted once from the logit of each token seen in the last "
        "repeat_last_n (OpenAI's presence_penalty, -2 to 2; 0 = off)."})
    frequency_penalty: float = field(default=0.0, metadata={
        "description": "Subtracted from a token's logit once per time it was seen in the last "
        "repeat_last_n (OpenAI's frequency_penalty, -2 to 2; 0 = off)."})
    logit_bias: dict[int, float] | None = field(default=None, metadata={
        "description": "Token id -> bias added to its logit before sampling (OpenAI's "
        "logit_bias, -100 to 100: -100 bans a token, 100 all but forces it)."})
    logprobs: int | None = field(default=None, metadata={
        "description": "Report each generated token's log-probability and its N most likely "
        "alternatives (0 to 20); None = no log-probabilities."})

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
        self._check_openai_extras(bad)

    def _check_openai_extras(self, bad: Any) -> None:
        """The OpenAI fields' ranges, as OpenAI's API reference gives them (``logprobs`` up
        to 20, as ``top_logprobs`` and llama-server allow)."""
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) \
                    or not -2.0 <= value <= 2.0:
                raise bad(name, "must be a number in [-2, 2]")
        if self.logit_bias is not None and (not isinstance(self.logit_bias, dict) or any(
                not isinstance(k, int) or isinstance(k, bool) or k < 0
                or not isinstance(v, int | float) or isinstance(v, bool)
                or not -100.0 <= v <= 100.0 for k, v in self.logit_bias.items())):
            raise bad("logit_bias", "must map token ids (integers >= 0) to numbers in "
                      "[-100, 100]")
        if self.logprobs is not None and (not isinstance(self.logprobs, int)
                                          or isinstance(self.logprobs, bool)
                                          or not 0 <= self.logprobs <= MAX_LOGPROBS):
            raise bad("logprobs", f"must be an integer in [0, {MAX_LOGPROBS}] or None")

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
class TokenLogprob:
    """A token's log-probability, in the shape of OpenAI's ``ChatCompletionTokenLogprob``
    (``{"token", "logprob", "bytes", "top_logprobs"}``).

    Attributes:
        token: the token's text; a token whose bytes are not whole UTF-8 characters (a piece
            of an emoji) gives what of it decodes (perhaps ""), as llama-server does.
        logprob: natural-log probability of the token (<= 0), at least -9999.0 (OpenAI's
            value for "very unlikely").
        bytes: the token's UTF-8 bytes (what joins it to its neighbours' bytes).
        top: the most likely tokens at this place, most likely first (each with no ``top``
            of its own); empty when none were asked for.
    """

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    top: tuple[TokenLogprob, ...] = ()

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's chat shape: ``{"token", "logprob", "bytes", "top_logprobs": [{"token",
        "logprob", "bytes"}, ...]}``."""
        return {"token": self.token, "logprob": self.logprob, "bytes": list(self.bytes),
                "top_logprobs": [{"token": t.token, "logprob": t.logprob,
                                  "bytes": list(t.bytes)} for t in self.top]}


@dataclass(frozen=True)
class TokenEvent:
    """A piece of streamed text: one or more tokens, decoded to complete UTF-8 characters.

    Attributes:
        text: the text.
        logprobs: when ``SamplingParams.logprobs`` asked for them, one record per token
            whose text ends in this event, in order (a record may come with an event whose
            text is "": a token of no text, or text a stop string held back).
    """

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


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
class ToolDecision:
    """What the model chose under ``tool_choice: "auto"``, first in a tool stream.

    Attributes:
        choice: ``reply`` (answer in text) or the name of the tool it will call.
        scores: the natural-log likelihood of each option (``reply`` and each tool), as
            ``LanguageBackend.choose`` scored them (0 and -inf when picked without scores).
    """

    choice: str
    scores: dict[str, float]


@dataclass(frozen=True)
class ToolCallStart:
    """A call begins: its id and the tool's name (its arguments follow as
    ``ToolArguments``)."""

    id: str
    name: str


@dataclass(frozen=True)
class ToolArguments:
    """A piece of the current call's arguments, JSON text; the pieces joined are the
    arguments."""

    text: str


ToolEvent = ToolDecision | ToolCallStart | ToolArguments
ChatEvent = TokenEvent | ToolEvent | Done
ToolStream = Iterator[ChatEvent]
"""A reply that may be a tool call: ``ToolDecision`` (``auto`` only), then either text
(``TokenEvent``) or a call (``ToolCallStart`` and ``ToolArguments``), then ``Done`` (finish
reason ``tool_calls`` after a whole call)."""


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
