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
from collections.abc import Generator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import httpx
import jsonschema

from chinwag.backends.base import Capabilities, LanguageBackend, ModelInfo, check_json_schema
from chinwag.backends.remote import RemoteClient, says_context_overflow
from chinwag.backends.stops import StopScanner
from chinwag.errors import (
    BackendError,
    BackendRejected,
    ContextOverflow,
    InvalidParams,
    RemoteError,
    SchemaError,
)
from chinwag.prompting import ChatFormat, Prompt, Speakers, resolve_chat_format
from chinwag.types import Choice, Done, EventStream, Message, SamplingParams, TokenEvent, Usage

log = logging.getLogger("chinwag.backends.openai")

CHARS_PER_TOKEN = 4
"""OpenAI's rule of thumb for English text, used when the server cannot count tokens."""

MAX_STOP = 4
"""The OpenAI API takes at most 4 stop strings; the rest are applied here."""

Api = Literal["chat", "completions"]
TokenizeMode = Literal["auto", "server", "estimate"]
ChooseMode = Literal["auto", "logprobs", "enum"]


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
                 api: Api = "chat", context_length: int = 4096, chat_format: str | None = None,
                 max_parallel: int = 4, timeout: float = 120.0, max_retries: int = 3,
                 backoff: float = 0.5, tokenize: TokenizeMode = "auto",
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
        self._choose: ChooseMode = choose
        self._extra = dict(extra_body or {})
        self._forced_format = chat_format
        self.chat_format = self.format_for(None)
        self.capabilities = Capabilities(json_schema=True, choose=True,
                                         exact_token_count=tokenize != "estimate")

    # -- what the backend is ----------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    def format_for(self, persona_format: str | None) -> ChatFormat:
        if self.api == "chat":  # the server renders; chinwag's render only estimates sizes
            return resolve_chat_format(model_template=None,
                                       requested=self._forced_format or "chatml")
        return resolve_chat_format(model_template=None, requested=self._forced_format,
                                   persona_format=persona_format)

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
                answer = self._root.post("/tokenize", {"content": text, "prompt": text,
                                                       "model": self.model_id})
                return _token_count(answer)
            except (RemoteError, ValueError) as e:
                if self._tokenize == "server":
                    raise
                log.warning("%s has no usable /tokenize (%s); token counts are estimates "
                            "from now on", self._root.base_url, e)
                self._tokenize = "estimate"
                self.capabilities = replace(self.capabilities, exact_token_count=False)
        return math.ceil(len(text) / CHARS_PER_TOKEN)

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
        return {**body, **self._extra}

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        check_json_schema(params.json_schema)
        body = {**self._body(params), "prompt": prompt}
        return self._stream("/completions", body, params, lambda c: c.get("text"))

    def generate_chat(self, prompt: Prompt, params: SamplingParams) -> EventStream:
        if self.api == "completions" or not prompt.messages:
            return self.generate(prompt.text, params)
        check_json_schema(params.json_schema)
        body = {**self._body(params),
                "messages": [{"role": m.role, "content": m.content} for m in prompt.messages]}
        return self._stream("/chat/completions", body, params,
                            lambda c: (c.get("delta") or {}).get("content"))

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
        scanner = StopScanner(params.stop)
        finish: str | None = None
        usage: dict[str, Any] = {}
        parts: list[str] = []
        try:
            event = first
            while event is not None:
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or ():
                    piece = text_of(choice)
                    if piece:
                        text = scanner.feed(piece)
                        if text:
                            parts.append(text)
                            yield TokenEvent(text)
                    finish = choice.get("finish_reason") or finish
                if scanner.stopped:
                    break
                event = next(events, None)
            tail = scanner.flush()
            if tail:
                parts.append(tail)
                yield TokenEvent(tail)
        finally:
            events.close()
        reason = "stop" if scanner.stopped or finish != "length" else "length"
        if params.json_schema is not None:
            if reason == "length" and "".join(parts).lstrip()[:1] in ("{", "["):
                raise SchemaError(f"max_tokens ({params.max_tokens}) ended the JSON before it "
                                  f"was complete: {''.join(parts)[:200]!r}")
            _validate(params.json_schema, "".join(parts), self.client.base_url)
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

    def choose(self, messages: Sequence[Message], options: Sequence[str],
               *, speakers: Speakers = Speakers()) -> Choice:
        if not options:
            raise InvalidParams("choose needs at least one option", param="options")
        if any(not o for o in options):
            raise InvalidParams("options must be non-empty strings", param="options")
        if self._choose in ("auto", "logprobs"):
            prompt = self.render(messages, speakers, self.format_for(None)).text
            try:
                scores = [self._option_logprob(prompt, option) for option in options]
                best = max(range(len(options)), key=scores.__getitem__)
                return Choice(best, options[best], scores[best], scores)
            except (BackendRejected, _NoLogprobs) as e:
                if self._choose == "logprobs":
                    raise BackendError(f"{self.client.base_url} gives no prompt "
                                       f"log-probabilities: {e}") from None
                log.info("%s gives no prompt log-probabilities (%s); choosing by a JSON "
                         "enum from now on", self.client.base_url, e)
                self._choose = "enum"
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
        prompt = self.render([*messages, ask], speakers, self.format_for(None))
        params = SamplingParams(temperature=0, max_tokens=32 + 4 * max(map(len, options)),
                                json_schema=schema)
        parts: list[str] = []
        for event in self.generate_chat(prompt, params):
            if isinstance(event, TokenEvent):
                parts.append(event.text)
        picked = json.loads("".join(parts))["choice"]
        index = list(options).index(picked)
        scores = [0.0 if i == index else -math.inf for i in range(len(options))]
        return Choice(index, picked, 0.0, scores)

    def close(self) -> None:
        self.client.close()
        self._root.close()


class _NoLogprobs(Exception):
    """The server's answer has no prompt log-probabilities."""


def _token_count(answer: Any) -> int:
    """The count in a tokenize answer: vLLM's ``count``, else ``len(tokens)`` (llama.cpp's and
    chinwag's shape)."""
    if isinstance(answer, dict):
        if isinstance(answer.get("count"), int):
            return int(answer["count"])
        if isinstance(answer.get("tokens"), list):
            return len(answer["tokens"])
    raise ValueError(f"not a tokenize answer: {str(answer)[:100]}")


def _validate(schema: dict[str, Any], text: str, where: str) -> None:
    """Raise ``SchemaError`` unless ``text`` is JSON valid against ``schema`` (the server may
    have ignored the schema, or stopped at ``max_tokens`` mid-object)."""
    try:
        jsonschema.validate(json.loads(text), schema)
    except ValueError as e:
        raise SchemaError(f"{where} returned text that is not JSON ({e}); the server may not "
                          f"enforce JSON Schema on this endpoint, or max_tokens cut it: "
                          f"{text[:200]!r}") from None
    except jsonschema.ValidationError as e:
        raise SchemaError(f"{where} returned JSON that does not match the schema "
                          f"({e.message}); the server does not enforce JSON Schema on this "
                          f"endpoint") from None
