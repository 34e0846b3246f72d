"""Request bodies at the HTTP edge (pydantic), in the shapes OpenAI and llama.cpp clients send.

Unknown fields are ignored (clients send many we do not use); known fields are checked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chinwag.errors import InvalidParams
from chinwag.llms.registry import parse_keep_alive
from chinwag.types import Message, SamplingParams


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart] | None = None

    def to_message(self) -> Message:
        """As chinwag's ``Message`` (text parts joined; ``developer`` counts as ``system``).

        Raises:
            InvalidParams: a part that is not text.
        """
        if isinstance(self.content, list):
            if any(p.type != "text" for p in self.content):
                raise InvalidParams("only text content parts are supported", param="messages")
            text = "".join(p.text or "" for p in self.content)
        else:
            text = self.content or ""
        role = "system" if self.role == "developer" else self.role
        return Message(role, text)


class JSONSchemaFormat(_Body):
    name: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class Sampling(_Body):
    """Sampling fields shared by the OpenAI endpoints (llama.cpp's extras included)."""

    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    cache_prompt: bool | None = None
    n: int = 1
    keep_alive: float | str | None = None  # Ollama's: seconds or a duration ("5m")

    def keep_alive_seconds(self) -> float | None:
        """``keep_alive`` in seconds (``chinwag.llms.parse_keep_alive``), None if not given.

        Raises:
            InvalidParams: not seconds nor a duration.
        """
        return parse_keep_alive(self.keep_alive)

    def apply(self, base: SamplingParams) -> SamplingParams:
        """``base`` with the fields this request set.

        Raises:
            InvalidParams: a value out of range, or ``n`` other than 1.
        """
        if self.n != 1:
            raise InvalidParams(f"n={self.n} is not supported: chinwag returns one choice "
                                "per request (n must be 1)", param="n")
        changes: dict[str, Any] = {
            k: getattr(self, k) for k in ("temperature", "top_p", "top_k", "min_p",
                                          "repeat_penalty", "seed", "cache_prompt")
            if getattr(self, k) is not None}
        limit = self.max_completion_tokens if self.max_completion_tokens is not None \
            else self.max_tokens
        if limit is not None:
            changes["max_tokens"] = limit
        if self.stop is not None:
            changes["stop"] = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        return base.with_(**changes)


class ChatCompletionRequest(Sampling):
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    on_source_error: Literal["skip", "fail"] | None = None


class CompletionRequest(Sampling):
    model: str = ""
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None


class ModelRequest(_Body):
    """``POST /models/load`` and ``/models/unload`` (llama-server's shape), with Ollama's
    ``keep_alive`` for a load."""

    model: str = Field(min_length=1)
    keep_alive: float | str | None = None


class PageParams(_Body):
    """Sampling settings a chat page sends (None: the persona's own)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    repeat_penalty: float | None = None
    seed: int | None = None

    def changes(self) -> dict[str, Any]:
        """The settings given, by name."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class PageChatRequest(_Body):
    """``POST /chat/{persona}``: a message in a stored conversation (a new one when
    ``conversation`` is null)."""

    user: str = Field(min_length=1, max_length=200)
    conversation: str | None = None
    text: str = Field(min_length=1)
    model: str | None = None
    params: PageParams | None = None


class RegenerateRequest(_Body):
    """``POST /conversations/{id}/regenerate``: answer the last user message again."""

    user: str | None = None
    model: str | None = None
    params: PageParams | None = None


class EditRequest(RegenerateRequest):
    """``POST /conversations/{id}/edit``: replace the user message ``seq`` (and drop what
    followed it), then answer it."""

    seq: int = Field(ge=0)
    text: str = Field(min_length=1)


class RenameRequest(_Body):
    """``PATCH /conversations/{id}``: a new title (``""``: back to the first message)."""

    title: str = Field(max_length=200)


class TruncateRequest(_Body):
    """``POST /conversations/{id}/truncate``: forget the messages from ``seq`` on."""

    seq: int = Field(ge=0)


class TokenizeRequest(_Body):
    """``/tokenize``: llama.cpp sends ``content``, vLLM ``prompt`` (and ``model``)."""

    content: str | None = None
    prompt: str | None = None
    model: str = ""


class ToilRequest(_Body):
    """``/toil/{persona}``'s body: ``text`` is a URL or raw text to answer from."""

    prompt: str
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    user: str | None = None
    conversation: str | None = None
    text: str | None = None
    on_source_error: Literal["skip", "fail"] | None = None


class NPCTalkRequest(_Body):
    """``POST /npc/{persona}/talk``: ``context`` fills the persona's {name}, {description},
    {location} and {user} (the player's display name) for this turn."""

    npc: str = Field(min_length=1, max_length=200)
    player: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1)
    context: dict[str, str] = Field(default_factory=dict)
    thinking_after: float | None = Field(None, ge=0)
    stream: bool = True
    on_busy: Literal["queue", "reject"] = "queue"


class NPCOverhearRequest(_Body):
    """``POST /npc/{persona}/overhear``: ``speaker`` said ``text`` where ``hearers`` heard it."""

    npc: str = Field(min_length=1, max_length=200)
    speaker: str = Field(min_length=1)
    text: str = Field(min_length=1)
    hearers: list[str] = Field(min_length=1)


class NPCCancelRequest(_Body):
    """``POST /npc/{persona}/cancel``: stop answering ``player``."""

    npc: str = Field(min_length=1, max_length=200)
    player: str = Field(min_length=1, max_length=200)


class GenerateRequest(_Body):
    """text-generation-webui's legacy ``/api/v1/generate`` body (what Evennia's contrib sends)."""

    prompt: str
    max_new_tokens: int = 250
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    stopping_strings: list[str] | None = None
    seed: int | None = None

    def params(self, base: SamplingParams) -> SamplingParams:
        """As sampling settings (``seed: -1`` means random, as in text-generation-webui)."""
        changes: dict[str, Any] = {"max_tokens": self.max_new_tokens}
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"),
                             ("top_k", "top_k"), ("min_p", "min_p"),
                             ("repeat_penalty", "repetition_penalty")):
            if getattr(self, theirs) is not None:
                changes[ours] = getattr(self, theirs)
        if self.seed is not None and self.seed >= 0:
            changes["seed"] = self.seed
        if self.stopping_strings:
            changes["stop"] = tuple(s for s in self.stopping_strings if s)
        return base.with_(**changes)
