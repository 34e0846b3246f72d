"""Request bodies at the HTTP edge (pydantic), in the shapes OpenAI and llama.cpp clients send.

The OpenAI requests (``ChatCompletionRequest``, ``CompletionRequest``) refuse a field they do
not know (a 400 naming it, code ``unsupported_parameter``): a field is honoured or refused,
never silently ignored. Fields of OpenAI's references that change nothing about the answer
(``metadata``, ``store: false``, ``service_tier``...) are accepted; the ones chinwag cannot
honour are refused when set. The other bodies ignore unknown fields.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from chinwag.errors import InvalidParams
from chinwag.llms.registry import parse_keep_alive
from chinwag.tools import Tool, ToolRequest
from chinwag.types import MAX_LOGPROBS, Message, SamplingParams, ToolCall


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    type: str
    text: str | None = None


class FunctionCall(_Body):
    name: str
    arguments: str = ""


class ToolCallItem(_Body):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallItem] | None = None
    tool_call_id: str | None = None

    def to_message(self) -> Message:
        """As chinwag's ``Message`` (text parts joined; ``developer`` counts as ``system``;
        an assistant's ``tool_calls`` and a tool result's ``tool_call_id`` kept).

        Raises:
            InvalidParams: a part that is not text; a ``tool`` message without
                ``tool_call_id``.
        """
        if isinstance(self.content, list):
            if any(p.type != "text" for p in self.content):
                raise InvalidParams("only text content parts are supported", param="messages")
            text = "".join(p.text or "" for p in self.content)
        else:
            text = self.content or ""
        if self.role == "tool" and not self.tool_call_id:
            raise InvalidParams("a tool message needs the tool_call_id of the call it answers",
                                param="messages")
        role = "system" if self.role == "developer" else self.role
        calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments)
                      for c in self.tool_calls or ())
        return Message(role, text, tool_calls=calls, tool_call_id=self.tool_call_id)


class FunctionDef(_Body):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolDef(_Body):
    type: str
    function: FunctionDef | None = None


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class _OpenAIBody(_Body):
    """A request of OpenAI's API: unknown fields are refused (the module docstring), and
    the fields of OpenAI's reference that chinwag cannot honour are refused when set to
    anything that would change the answer (``_REFUSED``: why, and the values that change
    nothing)."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, str] | None = None  # kept by OpenAI for its dashboard; no effect here
    service_tier: str | None = None  # one tier here
    store: bool | None = None  # false only (refused when true)
    prompt_cache_key: str | None = None  # KV reuse here is by prefix, always on
    safety_identifier: str | None = None

    _REFUSED: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {
        "store": ("chinwag keeps no completions for later retrieval", (False,))}

    def refuse_unhonoured(self) -> None:
        """Raise for a field chinwag cannot honour that the request set.

        Raises:
            InvalidParams: code ``unsupported_parameter``, naming the field.
        """
        for name, (why, harmless) in self._REFUSED.items():
            value = getattr(self, name)
            if value is not None and value not in harmless:
                raise InvalidParams(f"{name} is not supported: {why}", param=name,
                                    code="unsupported_parameter")


class JSONSchemaFormat(_Body):
    name: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class Sampling(_OpenAIBody):
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
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None  # OpenAI's: token ids as strings -> bias
    n: int = 1
    keep_alive: float | str | None = None  # Ollama's: seconds or a duration ("5m")

    def _logprobs(self) -> int | None:
        """``SamplingParams.logprobs`` as this endpoint asks for it (each request class
        says how); None: not asked."""
        return None

    def _openai_extras(self) -> dict[str, Any]:
        """The OpenAI fields this request set, as ``SamplingParams`` changes (ranges are
        checked there, naming the field).

        Raises:
            InvalidParams: a ``logit_bias`` key that is not a token id (an integer string).
        """
        changes: dict[str, Any] = {k: getattr(self, k) for k in (
            "presence_penalty", "frequency_penalty") if getattr(self, k) is not None}
        if self.logit_bias is not None:
            bad = [k for k in self.logit_bias if not (k.isascii() and k.isdigit())]
            if bad:
                raise InvalidParams("logit_bias keys must be token ids (non-negative integers, "
                                    f"as strings), got {bad[:5]}", param="logit_bias")
            changes["logit_bias"] = {int(k): v for k, v in self.logit_bias.items()} or None
        logprobs = self._logprobs()
        if logprobs is not None:
            changes["logprobs"] = logprobs
        return changes

    def keep_alive_seconds(self) -> float | None:
        """``keep_alive`` in seconds (``chinwag.llms.parse_keep_alive``), None if not given.

        Raises:
            InvalidParams: not seconds nor a duration.
        """
        return parse_keep_alive(self.keep_alive)

    def apply(self, base: SamplingParams) -> SamplingParams:
        """``base`` with the fields this request set.

        Raises:
            InvalidParams: a value out of range, ``n`` other than 1, or a field chinwag
                cannot honour (``refuse_unhonoured``).
        """
        self.refuse_unhonoured()
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
        return base.with_(**changes, **self._openai_extras())


class ChatCompletionRequest(Sampling):
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    on_source_error: Literal["skip", "fail"] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # one call per turn, which the spec allows
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: Any = None
    functions: Any = None
    function_call: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def _logprobs(self) -> int | None:
        """OpenAI's chat fields: ``logprobs: true`` reports each token's log-probability,
        ``top_logprobs`` (0 to 20, default 0) that many alternatives too.

        Raises:
            InvalidParams: ``top_logprobs`` without ``logprobs: true`` (as OpenAI answers).
        """
        if not self.logprobs:
            if self.top_logprobs is not None:
                raise InvalidParams("top_logprobs requires logprobs to be true",
                                    param="top_logprobs")
            return None
        return self.top_logprobs or 0

    _REFUSED: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {
        **_OpenAIBody._REFUSED,
        "audio": ("chinwag answers in text only", ()),
        "modalities": ("chinwag answers in text only", (["text"],)),
        "prediction": ("predicted outputs are not implemented", ()),
        "reasoning_effort": ("the models served do not reason in a separate channel", ()),
        "verbosity": ("no model here takes a verbosity setting", ()),
        "web_search_options": ("chinwag does not search the web (see knowledge sources)", ()),
        "functions": ("deprecated by OpenAI: send tools", ()),
        "function_call": ("deprecated by OpenAI: send tool_choice", ())}

    def tool_request(self) -> ToolRequest | None:
        """The request's tools and ``tool_choice`` (default ``auto`` with tools, as OpenAI),
        or None without tools.

        Raises:
            InvalidParams: a tool of another type than ``function`` (code
                ``unsupported_tool_type``), ``tool_choice`` without tools, ``logprobs`` with
                tools that may be called, or what ``ToolRequest`` refuses.
        """
        if not self.tools:
            if self.tool_choice not in (None, "none"):
                raise InvalidParams("tool_choice needs tools", param="tool_choice")
            return None
        tools = []
        for i, tool in enumerate(self.tools):
            if tool.type != "function" or tool.function is None:
                raise InvalidParams(f"tools[{i}] has type {tool.type!r}: only 'function' tools "
                                    "are supported", param=f"tools[{i}].type",
                                    code="unsupported_tool_type")
            tools.append(Tool(tool.function.name, tool.function.description,
                              tool.function.parameters))
        choice = self.tool_choice or "auto"
        if self.logprobs and choice != "none":
            raise InvalidParams("logprobs cannot be given with tools unless tool_choice is "
                                "'none': a call's tokens carry no log-probabilities here",
                                param="logprobs", code="unsupported_parameter")
        if isinstance(choice, NamedToolChoice):
            return ToolRequest(tuple(tools), "named", choice.function.name)
        return ToolRequest(tuple(tools), choice)


class CompletionRequest(Sampling):
    model: str = ""
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    best_of: int | None = None
    echo: bool | None = None
    suffix: str | None = None
    # OpenAI allows 0 to 5 alternatives here; chinwag, as llama-server, up to 20 (as chat)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def _logprobs(self) -> int | None:
        """OpenAI's completions field: ``logprobs: N`` reports each token's log-probability
        and its N most likely alternatives."""
        return self.logprobs

    _REFUSED: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {
        **_OpenAIBody._REFUSED,
        "best_of": ("one completion is generated per request (best_of must be 1)", (1,)),
        "echo": ("the prompt is not echoed back", (False,)),
        "suffix": ("insertion (fill in the middle) is not implemented", ("",))}


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
