"""The ``openai`` backend: any OpenAI-compatible server (OpenAI, vLLM, FastChat, Ollama,
llama.cpp's server, text-generation-webui, chinwag itself).

- Chats go to ``POST {base_url}/chat/completions`` with the messages (the server applies the
  model's chat template), or, with ``api: completions``, are rendered by chinwag's chat format
  and sent to ``POST {base_url}/completions`` (for base models, and for servers whose chat
  template is wrong). Raw ``generate`` always uses ``/completions``.
- Streaming is OpenAI's server-sent events; closing the stream closes the connection, which
  OpenAI-compatible servers take as "stop generating".
- JSON Schema goes as ``response_format: {"type": "json_schema", ...}``. Not every server
  enforces it on ``/completions``, so the finished text is validated here as well, and a
  server that ignored the schema raises ``SchemaError`` instead of passing bad JSON on.
- ``presence_penalty``, ``frequency_penalty`` and ``logit_bias`` are passed on as they are;
  ``logprobs`` as ``logprobs``/``top_logprobs`` (chat) or ``logprobs: N`` (completions), the
  server's records read back from either shape onto the text events (none when it sends
  none).
- ``choose`` scores options by log-likelihood when the server gives prompt log-probabilities
  (``/completions`` with ``echo`` and ``logprobs``: OpenAI's legacy models, vLLM); otherwise it
  asks for a reply constrained to a JSON Schema ``enum`` of the options, and the scores are
  0 for the chosen option and -inf for the others.
- ``count_tokens`` asks the server's tokenize endpoint (``POST /tokenize`` at the server's root:
  llama.cpp's, vLLM's and chinwag's); without one, it estimates 4 characters a token (OpenAI's
  rule of thumb) and ``capabilities.exact_token_count`` is False.
- Failures are retried and translated by ``RemoteClient`` (connection errors, timeouts, 429 and
  5xx with backoff, then ``BackendError`` subclasses).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from chinwag.backends.base import (
    Capabilities,
    LanguageBackend,
    ModelInfo,
    estimate_tokens,
    picked_choice,
    scored_choice,
)
from chinwag.backends.remote import (
    BACKOFF_S,
    CONTEXT_LENGTH,
    MAX_RETRIES,
    TIMEOUT_S,
    RemoteClient,
    RemoteConfig,
    says_context_overflow,
)
from chinwag.backends.stops import StopEvents
from chinwag.errors import (
    BackendError,
    BackendRejected,
    ConfigError,
    ContextOverflow,
    OutputInvalid,
    RemoteError,
    SchemaError,
    UpstreamIgnoredTools,
)
from chinwag.json_schema import check_json_schema, json_problem, validate_json_text
from chinwag.prompting import Prompt, Speakers
from chinwag.tools import ToolRequest, new_call_id
from chinwag.types import (
    Choice,
    Done,
    EventStream,
    Message,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
    ToolArguments,
    ToolCallStart,
    ToolStream,
    Usage,
)

if TYPE_CHECKING:
    import httpx

    from chinwag.models import Progress
    from chinwag.settings import Settings

log = logging.getLogger("chinwag.backends.openai")

MAX_STOP = 4
"""The OpenAI API takes at most 4 stop strings; the rest are applied here."""

Api = Literal["chat", "completions"]
TokenizeMode = Literal["auto", "server", "estimate"]
ChooseMode = Literal["auto", "logprobs", "enum"]


class OpenAILLM(RemoteConfig):
    """An LLM config for any OpenAI-compatible server: OpenAI, vLLM, FastChat, Ollama,
    llama.cpp, chinwag. The fields are ``OpenAIBackend``'s parameters, and ``api_key_env``."""

    backend: Literal["openai"]
    model_id: str
    base_url: str = Field(pattern=r"^https?://", description="Including /v1.")
    api_key: str | None = None
    api_key_env: str | None = Field(None, description="Read the API key from this variable.")
    api: Api = "chat"
    max_parallel: int = Field(4, ge=1, le=256)
    tokenize: TokenizeMode = "auto"
    choose: ChooseMode = "auto"
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)

    def api_key_value(self) -> str | None:
        """``api_key``, or the value of the variable ``api_key_env`` names.

        Raises:
            ConfigError: ``api_key_env`` names a variable that is not set.
        """
        if not self.api_key_env:
            return self.api_key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"the LLM config asks for the API key in ${self.api_key_env}, "
                              "which is not set")
        return key

    def build(self, settings: Settings, *, base_dir: Path | None = None,
              progress: Progress | None = None) -> OpenAIBackend:
        return OpenAIBackend(**self.arguments(exclude=("api_key", "api_key_env")),
                             api_key=self.api_key_value())


class OpenAIBackend(LanguageBackend):
    """A model behind an OpenAI-compatible HTTP API (see the module docstring).

    Args:
        base_url: the API's address including ``/v1`` (``http://gpu-box:8000/v1``).
        model_id: the ``model`` field sent with every request.
        api_key: sent as ``Authorization: Bearer ...`` when given.
        api: ``chat`` (send messages to ``/chat/completions``) or ``completions``.
        context_length: the model's context window, tokens.
        chat_format: the format used to render chats for ``api: completions``, and to estimate
            prompt sizes for ``api: chat`` (default ``chatml``).
        max_parallel: requests chinwag's server sends at once (the remote server batches them).
        timeout: seconds to wait for each read.
        max_retries: retries after the first attempt for connection errors, 429 and 5xx.
        backoff: seconds before the first retry, doubled after each.
        tokenize: ``auto`` (the server's tokenize endpoint if it has one, else an estimate),
            ``server`` (its endpoint, failing if absent) or ``estimate``.
        choose: ``auto`` (log-probabilities if the server gives them, else a JSON enum),
            ``logprobs`` or ``enum``.
        headers: more headers to send (an organisation id, a proxy's token).
        extra_body: fields added to every generation request (server-specific options, such
            as vLLM's ``top_k`` or ``repetition_penalty``; they override chinwag's).
        transport: an ``httpx`` transport (tests).

    Raises:
        ConfigError: an unknown ``chat_format``.
    """

    def __init__(self, base_url: str, *, model_id: str, api_key: str | None = None,
                 api: Api = "chat", context_length: int = CONTEXT_LENGTH,
                 chat_format: str | None = None, max_parallel: int = 4,
                 timeout: float = TIMEOUT_S, max_retries: int = MAX_RETRIES,
                 backoff: float = BACKOFF_S, tokenize: TokenizeMode = "auto",
                 choose: ChooseMode = "auto", headers: Mapping[str, str] | None = None,
                 extra_body: Mapping[str, Any] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        sent = dict(headers or {})
        if api_key:
            sent.setdefault("Authorization", f"Bearer {api_key}")
        self.client = RemoteClient(base_url, headers=sent, timeout=timeout,
                                   max_retries=max_retries, backoff=backoff, transport=transport)
        root = base_url.rstrip("/").removesuffix("/v1")
        self._root = RemoteClient(root, headers=sent, timeout=timeout, max_retries=0,
                                  transport=transport)
        self.model_id = model_id
        self.api = api
        self._context_length = context_length
        self._max_parallel = max_parallel
        self._tokenize: TokenizeMode = tokenize
        self._choose_mode: ChooseMode = choose
        self._extra = dict(extra_body or {})
        # with api: chat the server renders; chinwag's format only estimates sizes
        self._set_chat_format(chat_format or ("chatml" if api == "chat" else None))
        self.capabilities = Capabilities(json_schema=True, choose=True,
                                         exact_token_count=tokenize != "estimate",
                                         tools="upstream" if api == "chat" else "constrained")

    # -- what the backend is ----------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.model_id, n_ctx=self._context_length,
                         chat_format="server" if self.api == "chat" else self.chat_format.name,
                         path=self.client.base_url,
                         extra={"backend": "openai", "api": self.api,
                                "token_count": "exact" if self.capabilities.exact_token_count
                                else "approximate"})

    # -- tokens --------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: from the server's ``/tokenize`` when it has one, else
        ``ceil(len(text) / 4)``, an estimate (then ``capabilities.exact_token_count`` turns
        False, so callers can tell).

        Raises:
            RemoteError: ``tokenize: server`` and the endpoint failed.
        """
        if self._tokenize != "estimate":
            try:
                return self._root.count_tokens("/tokenize", text, model=self.model_id)
            except RemoteError as e:
                if self._tokenize == "server":
                    raise
                log.warning("%s has no usable /tokenize (%s); token counts are estimates "
                            "from now on", self._root.base_url, e)
                self._tokenize = "estimate"
                self.capabilities = replace(self.capabilities, exact_token_count=False)
        return estimate_tokens(text)

    # -- generation ----------------------------------------------------------------------------

    def _body(self, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_id, "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "stream": True, "stream_options": {"include_usage": True}}
        if params.stop:
            body["stop"] = list(params.stop[:MAX_STOP])
        if params.seed is not None:
            body["seed"] = params.seed
        if params.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": params.json_schema, "strict": True}}
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(params, name):
                body[name] = getattr(params, name)
        if params.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
        return {**body, **self._extra}

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        check_json_schema(params.json_schema)
        body = {**self._body(params), "prompt": prompt}
        if params.logprobs is not None:
            body["logprobs"] = params.logprobs
        return self._stream("/completions", body, params, lambda c: c.get("text"))

    def generate_chat(self, prompt: Prompt, params: SamplingParams) -> EventStream:
        if self.api == "completions" or not prompt.messages:
            return self.generate(prompt.text, params)
        check_json_schema(params.json_schema)
        body = {**self._body(params), "messages": [_wire(m) for m in prompt.messages]}
        if params.logprobs is not None:
            body.update(logprobs=True, top_logprobs=params.logprobs)
        return self._stream("/chat/completions", body, params,
                            lambda c: (c.get("delta") or {}).get("content"))

    def generate_tools(self, prompt: Prompt, params: SamplingParams,
                       tools: ToolRequest) -> ToolStream:
        """With ``api: chat``, the tools go to the server (``tools``, ``tool_choice``) and its
        ``tool_calls`` come back as they stream (the first call: one per turn). Under
        ``required`` or a named tool the text is held back: an answer without a call is
        ``UpstreamIgnoredTools`` (HTTP 502) carrying it. A finished call's arguments are
        checked against the tool's schema (``OutputInvalid`` with the text if they fail).
        With ``api: completions``, chinwag constrains the call itself
        (``LanguageBackend.generate_tools``)."""
        if self.capabilities.tools != "upstream" or not prompt.messages:
            return super().generate_tools(prompt, params, tools)
        choice: Any = tools.mode if tools.mode != "named" else {
            "type": "function", "function": {"name": tools.name}}
        body = {**self._body(params), "messages": [_wire(m) for m in prompt.messages],
                "tools": [t.as_openai() for t in tools.tools], "tool_choice": choice}
        try:
            events = self.client.server_sent_events("/chat/completions", body)
            first = next(events, None)
        except BackendRejected as e:
            raise self._overflow_or(e, body) from None
        return self._tool_events(first, events, tools)

    def _tool_events(self, first: Any, events: Generator[Any, None, None],
                     tools: ToolRequest) -> ToolStream:
        must_call = tools.mode in ("required", "named")
        held: list[str] = []
        call: dict[str, str] | None = None
        finish: str | None = None
        usage: dict[str, Any] = {}
        try:
            event = first
            while event is not None:
                usage = event.get("usage") or usage
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") or {}
                    finish = choice.get("finish_reason") or finish
                    if delta.get("content"):
                        if must_call and call is None:
                            held.append(delta["content"])
                        else:
                            yield TokenEvent(delta["content"])
                    for item in delta.get("tool_calls") or ():
                        if item.get("index", 0) != 0:
                            continue  # one call per turn (parallel calls are not asked for)
                        function = item.get("function") or {}
                        if call is None:
                            if held:
                                yield TokenEvent("".join(held))
                                held.clear()
                            call = {"name": function.get("name") or "", "arguments": ""}
                            yield ToolCallStart(item.get("id") or new_call_id(), call["name"])
                        if function.get("arguments"):
                            call["arguments"] += function["arguments"]
                            yield ToolArguments(function["arguments"])
                event = next(events, None)
        finally:
            events.close()
        if call is None and must_call:
            text = "".join(held)
            raise UpstreamIgnoredTools(
                f"{self.client.base_url} answered without the tool call that tool_choice "
                f"({tools.mode}) asked for: {text[:200]!r}", url=self.client.base_url)
        if held:
            yield TokenEvent("".join(held))
        reason = "length" if finish == "length" else "tool_calls" if call else "stop"
        if call is not None and reason == "tool_calls":
            _check_call(call, tools, str(self.client.base_url))
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        yield Done(reason, Usage(int(usage.get("prompt_tokens") or 0),  # type: ignore[arg-type]
                                 int(usage.get("completion_tokens") or 0), int(cached)))

    def _stream(self, path: str, body: dict[str, Any], params: SamplingParams,
                text_of: Any) -> EventStream:
        try:
            events = self.client.server_sent_events(path, body)
            first = next(events, None)  # errors (refused, 401, context) surface here, at call
        except BackendRejected as e:
            raise self._overflow_or(e, body) from None
        return self._events(first, events, params, text_of)

    def _events(self, first: Any, events: Generator[Any, None, None], params: SamplingParams,
                text_of: Any) -> Generator[TokenEvent | Done, None, None]:
        scanner = StopEvents(params.stop)
        finish: str | None = None
        usage: dict[str, Any] = {}
        parts: list[str] = []
        try:
            event = first
            while event is not None:
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or ():
                    piece = text_of(choice) or ""
                    records = _logprobs_of(choice) if params.logprobs is not None else ()
                    out = scanner.feed(piece, records) if piece or records else None
                    if out is not None:
                        parts.append(out.text)
                        yield out
                    finish = choice.get("finish_reason") or finish
                if scanner.stopped:
                    break
                event = next(events, None)
            tail = scanner.finish()
            if tail is not None:
                parts.append(tail.text)
                yield tail
        finally:
            events.close()
        reason = "stop" if scanner.stopped or finish != "length" else "length"
        if params.json_schema is not None:
            text = "".join(parts)
            if reason == "length" and text.lstrip()[:1] in ("{", "["):
                raise SchemaError(f"max_tokens ({params.max_tokens}) ended the JSON before it "
                                  f"was complete: {text[:200]!r}")
            validate_json_text(text, params.json_schema,
                               source=f"the reply of {self.client.base_url}",
                               hint="the server may not enforce JSON Schema on this endpoint")
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        yield Done(reason, Usage(int(usage.get("prompt_tokens") or 0),  # type: ignore[arg-type]
                                 int(usage.get("completion_tokens") or 0), int(cached)))

    def _overflow_or(self, e: BackendRejected, body: dict[str, Any]
                     ) -> BackendError | ContextOverflow:
        if not says_context_overflow(e):
            return e
        text = body.get("prompt") or "\n".join(m["content"] for m in body.get("messages", ()))
        return ContextOverflow(self.count_tokens(text), self._context_length,
                               body.get("max_tokens", 0))

    # -- choosing --------------------------------------------------------------------------------

    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        """By log-likelihood when the server gives prompt log-probabilities, else by a reply
        constrained to a JSON enum of the options (``choose`` mode, module docstring)."""
        if self._choose_mode in ("auto", "logprobs"):
            prompt = self.render(messages, speakers).text
            try:
                return scored_choice(options, [self._option_logprob(prompt, option)
                                               for option in options])
            except (BackendRejected, _NoLogprobs) as e:
                if self._choose_mode == "logprobs":
                    raise BackendError(f"{self.client.base_url} gives no prompt "
                                       f"log-probabilities: {e}") from None
                log.info("%s gives no prompt log-probabilities (%s); choosing by a JSON "
                         "enum from now on", self.client.base_url, e)
                self._choose_mode = "enum"
        return self._choose_by_enum(messages, options, speakers)

    def _option_logprob(self, prompt: str, option: str) -> float:
        """Sum of the option's token log-probabilities after ``prompt``, read from an echoed
        completion (OpenAI's ``echo`` + ``logprobs``: ``text_offset`` marks where each token
        starts)."""
        answer = self.client.post("/completions", {
            "model": self.model_id, "prompt": prompt + option, "echo": True, "logprobs": 0,
            "max_tokens": 1, "temperature": 0})
        try:
            lp = answer["choices"][0]["logprobs"]
            offsets, values = lp["text_offset"], lp["token_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise _NoLogprobs("no logprobs.text_offset/token_logprobs in the answer") from None
        if not offsets or offsets[0] != 0 or len(offsets) != len(values):
            raise _NoLogprobs("the prompt's tokens were not echoed")
        start = len(prompt)
        total = [v for o, v in zip(offsets, values, strict=True)
                 if start <= o < start + len(option) and v is not None]
        if not total:
            raise _NoLogprobs("no log-probabilities for the option's tokens")
        return math.fsum(total)

    def _choose_by_enum(self, messages: Sequence[Message], options: Sequence[str],
                        speakers: Speakers) -> Choice:
        schema = {"type": "object", "properties": {"choice": {"enum": list(options)}},
                  "required": ["choice"], "additionalProperties": False}
        ask = Message("system", "Answer with one of these options: "
                      + "; ".join(json.dumps(o) for o in options))
        prompt = self.render([*messages, ask], speakers)
        params = SamplingParams(temperature=0, max_tokens=32 + 4 * max(map(len, options)),
                                json_schema=schema)
        parts: list[str] = []
        for event in self.generate_chat(prompt, params):
            if isinstance(event, TokenEvent):
                parts.append(event.text)
        picked = json.loads("".join(parts))["choice"]
        return picked_choice(options, list(options).index(picked))

    def close(self) -> None:
        self.client.close()
        self._root.close()


def _wire(message: Message) -> dict[str, Any]:
    """A message as OpenAI's API takes it (tool calls and tool results included)."""
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [call.as_openai() for call in message.tool_calls]
        wire["content"] = message.content or None
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _check_call(call: dict[str, str], tools: ToolRequest, source: str) -> None:
    """A finished call from a server: to one of the tools, arguments valid by its schema.

    Raises:
        OutputInvalid: it is not (the message has the arguments and the problem).
    """
    found = [t for t in tools.tools if t.name == call["name"]]
    problem = (f"a call to an unknown tool {call['name']!r}" if not found
               else json_problem(call["arguments"], found[0].parameters))
    if problem is not None:
        raise OutputInvalid(f"{source} made a tool call that does not match its schema "
                            f"({problem}): {call['arguments'][:300]!r}",
                            text=call["arguments"], problem=problem)


def _logprobs_of(choice: dict[str, Any]) -> tuple[TokenLogprob, ...]:
    """The token log-probabilities in a streamed choice from the server, in either of OpenAI's
    shapes: chat's ``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}`` or the
    legacy completions' ``{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}]}``;
    empty when it sent none. A missing value is OpenAI's -9999.0, missing bytes the token's
    UTF-8."""
    given = choice.get("logprobs") or {}

    def record(token: Any, logprob: Any, raw: Any = None,
               top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
        text = token if isinstance(token, str) else ""
        return TokenLogprob(text, float(logprob) if logprob is not None else -9999.0,
                            tuple(raw) if raw is not None else tuple(text.encode()), top)

    if isinstance(given.get("content"), list):
        return tuple(record(item.get("token"), item.get("logprob"), item.get("bytes"), tuple(
            record(t.get("token"), t.get("logprob"), t.get("bytes"))
            for t in item.get("top_logprobs") or ())) for item in given["content"])
    tokens = given.get("tokens") or []
    values = given.get("token_logprobs") or [None] * len(tokens)
    tops = given.get("top_logprobs") or [None] * len(tokens)
    return tuple(record(token, value, None, tuple(
        record(t, lp) for t, lp in (top or {}).items()))
        for token, value, top in zip(tokens, values, tops, strict=False))


class _NoLogprobs(Exception):
    """The server's answer has no prompt log-probabilities."""

