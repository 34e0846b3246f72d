"""The ``http`` backend: a raw HTTP API with its own request and response shapes, the kind of
integration game engines ship (text-generation-webui's legacy ``/api/v1/generate``, llama.cpp's
``/completion``, OpenAI's ``/v1/completions``, a company's in-house service).

One YAML file per provider says where to send the prompt and where the text comes back::

    backend: http
    host: http://127.0.0.1:5000
    path: /api/v1/generate
    prompt_key: prompt                 # where the prompt goes in the body (dotted path)
    body:                              # the rest of the body: Jinja2 templates
      max_new_tokens: "{{ max_tokens }}"
      temperature: "{{ temperature }}"
      stopping_strings: "{{ stop }}"
    text_path: results.0.text          # where the text is in the answer

A body value that is one ``{{ expression }}`` and nothing else keeps the expression's type (a
number stays a number, ``stop`` stays a list); any other string is rendered as text. The names
available are the sampling parameters (``max_tokens``, ``temperature``, ``top_k``, ``top_p``,
``min_p``, ``repeat_penalty``, ``repeat_last_n``, ``stop``, ``seed``, ``presence_penalty``,
``frequency_penalty``, ``logit_bias``), ``prompt`` and ``json_schema``. The answer is not
streamed: the text arrives whole and is passed on as one piece. Stop strings are applied here
too, in case the service ignores them. A request that sets ``presence_penalty``,
``frequency_penalty`` or ``logit_bias`` is refused unless the body template sends it;
``logprobs`` always is (``base.refuse_unsupported``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import StrictUndefined, TemplateError, Undefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import Field

from chinwag.backends.base import (
    Capabilities,
    LanguageBackend,
    ModelInfo,
    estimate_tokens,
    picked_choice,
    refuse_unsupported,
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
from chinwag.backends.stops import StopScanner
from chinwag.errors import (
    BackendRejected,
    BackendServerError,
    ConfigError,
    ContextOverflow,
    SchemaError,
)
from chinwag.json_schema import check_json_schema, validate_json_text
from chinwag.prompting import Speakers
from chinwag.types import Choice, Done, EventStream, Message, SamplingParams, TokenEvent, Usage

if TYPE_CHECKING:
    import httpx

    from chinwag.models import Progress
    from chinwag.settings import Settings

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)


def dig(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``results.0.text``: numbers index lists).

    Raises:
        KeyError: a step of the path is not there (the message names it).
    """
    here = data
    for step in path.split("."):
        if isinstance(here, list) and step.lstrip("-").isdigit() and \
                -len(here) <= int(step) < len(here):
            here = here[int(step)]
        elif isinstance(here, dict) and step in here:
            here = here[step]
        else:
            raise KeyError(f"no {step!r} at {path!r} in {json.dumps(data)[:200]}")
    return here


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for step in parents:
        body = body.setdefault(step, {})
    body[last] = value


class BodyTemplate:
    """A request body built from a mapping of Jinja2 templates (see the module docstring).

    Raises:
        ConfigError: a template that does not compile.
    """

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.template = dict(template)
        try:
            self._compiled = self._compile(self.template)
            self.names = frozenset(self._names(self.template))
        except TemplateError as e:
            raise ConfigError(f"http backend: a body template does not compile: {e}") from None

    def _names(self, node: Any) -> set[str]:
        """The names the templates in ``node`` use (``presence_penalty``, ``stop``...)."""
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            return set().union(*(self._names(v) for v in node))
        if isinstance(node, str) and ("{{" in node or "{%" in node):
            return meta.find_undeclared_variables(_env.parse(node))
        return set()

    def _compile(self, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: self._compile(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self._compile(v) for v in node]
        if isinstance(node, str):
            whole = _WHOLE_EXPRESSION.match(node)
            if whole:
                return ("expr", _env.compile_expression(whole.group(1).strip(),
                                                        undefined_to_none=False))
            if "{{" in node or "{%" in node:
                return ("text", _env.from_string(node))
        return ("value", node)

    def render(self, values: Mapping[str, Any]) -> Any:
        """The body for ``values``.

        Raises:
            ConfigError: a template names something that is not among ``values``.
        """
        try:
            return self._render(self._compiled, values)
        except TemplateError as e:
            raise ConfigError(f"http backend: cannot fill the body template: {e}; known "
                              f"names: {', '.join(sorted(values))}") from None

    def _render(self, node: Any, values: Mapping[str, Any]) -> Any:
        if isinstance(node, dict):
            return {k: self._render(v, values) for k, v in node.items()}
        if isinstance(node, list):
            return [self._render(v, values) for v in node]
        kind, item = node
        if kind == "expr":
            result = item(**values)
            if isinstance(result, Undefined):
                raise ConfigError(f"http backend: the body template names "
                                  f"{result._undefined_name!r}, which is not known; known "
                                  f"names: {', '.join(sorted(values))}")
            return list(result) if isinstance(result, tuple) else result
        if kind == "text":
            return item.render(**values)
        return item


class HttpLLM(RemoteConfig):
    """An LLM config for a raw HTTP completion API with its own shapes (the module
    docstring). The fields are ``HttpBackend``'s parameters."""

    backend: Literal["http"]
    host: str = Field(pattern=r"^https?://")
    path: str = Field(pattern=r"^/")
    prompt_key: str = "prompt"
    text_path: str = "results.0.text"
    body: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    schema_key: str | None = None
    tokenize_path: str | None = None
    prompt_tokens_path: str | None = None
    completion_tokens_path: str | None = None

    def build(self, settings: Settings, *, base_dir: Path | None = None,
              progress: Progress | None = None) -> HttpBackend:
        return HttpBackend(**self.arguments())


class HttpBackend(LanguageBackend):
    """A raw HTTP completion API (see the module docstring).

    Args:
        host: scheme, host and port (``http://127.0.0.1:5000``).
        path: the endpoint (``/api/v1/generate``).
        prompt_key: dotted path in the body where the prompt goes.
        text_path: dotted path of the generated text in the answer.
        body: the rest of the body, as Jinja2 templates.
        headers: sent with every request (API keys).
        context_length: the model's context window, tokens.
        schema_key: dotted path where a JSON Schema goes, for services that enforce one
            (llama.cpp's ``/completion``: ``json_schema``); without it, JSON Schema output is
            refused with ``SchemaError``.
        tokenize_path: an endpoint that counts tokens (``POST {"content": text}``, answering
            ``{"tokens": [...]}`` or ``{"count": n}``); without it, counts are estimates.
        prompt_tokens_path, completion_tokens_path: where token counts are in the answer, if
            the service reports them.
        chat_format: how chats are rendered into the prompt (default: the persona's, else the
            transcript format).
        timeout, max_retries, backoff: as ``RemoteClient``.
        transport: an ``httpx`` transport (tests).

    Raises:
        ConfigError: a body template that does not compile.
    """

    def __init__(self, host: str, path: str, *, prompt_key: str = "prompt",
                 text_path: str = "results.0.text", body: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None,
                 context_length: int = CONTEXT_LENGTH,
                 schema_key: str | None = None, tokenize_path: str | None = None,
                 prompt_tokens_path: str | None = None,
                 completion_tokens_path: str | None = None, chat_format: str | None = None,
                 model_id: str = "http", timeout: float = TIMEOUT_S,
                 max_retries: int = MAX_RETRIES, backoff: float = BACKOFF_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.client = RemoteClient(host, headers=headers, timeout=timeout,
                                   max_retries=max_retries, backoff=backoff, transport=transport)
        self.path = path
        self.prompt_key = prompt_key
        self.text_path = text_path
        self.template = BodyTemplate(body or {})
        self.schema_key = schema_key
        self.tokenize_path = tokenize_path
        self.usage_paths = (prompt_tokens_path, completion_tokens_path)
        self.model_id = model_id
        self._context_length = context_length
        self._set_chat_format(chat_format)
        self.capabilities = Capabilities(json_schema=schema_key is not None, choose=False,
                                         exact_token_count=tokenize_path is not None)

    @property
    def context_length(self) -> int:
        return self._context_length

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.model_id, n_ctx=self._context_length,
                         chat_format=self.chat_format.name,
                         path=self.client.url(self.path), extra={"backend": "http"})

    def count_tokens(self, text: str) -> int:
        """From ``tokenize_path`` when configured, else ``ceil(len(text) / 4)``.

        Raises:
            RemoteError: the tokenize endpoint failed.
        """
        if self.tokenize_path is None:
            return estimate_tokens(text)
        return self.client.count_tokens(self.tokenize_path, text)

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        # a field the body template sends is the service's to honour; log-probabilities
        # cannot be read back from a whole text
        refuse_unsupported(params, self.template.names - {"logprobs"}, self.model_id)
        if params.json_schema is not None:
            if self.schema_key is None:
                raise SchemaError("this http backend's config has no schema_key, so it cannot "
                                  "enforce a JSON Schema (llama.cpp's /completion takes "
                                  "'json_schema')")
            check_json_schema(params.json_schema)
        prompt_tokens = self.count_tokens(prompt) if self.tokenize_path else None
        if prompt_tokens is not None and prompt_tokens >= self._context_length:
            raise ContextOverflow(prompt_tokens, self._context_length)
        values = {**dataclasses.asdict(params), "prompt": prompt}
        body = self.template.render(values)
        if not isinstance(body, dict):
            raise ConfigError("http backend: the body template must be a mapping")
        _put(body, self.prompt_key, prompt)
        if params.json_schema is not None and self.schema_key:
            _put(body, self.schema_key, params.json_schema)
        try:
            answer = self.client.post(self.path, body)
        except BackendRejected as e:
            if says_context_overflow(e):
                raise ContextOverflow(prompt_tokens or self.count_tokens(prompt),
                                      self._context_length, params.max_tokens) from None
            raise
        return self._events(answer, prompt, params, prompt_tokens)

    def _events(self, answer: Any, prompt: str, params: SamplingParams,
                prompt_tokens: int | None) -> EventStream:
        try:
            text = dig(answer, self.text_path)
        except KeyError as e:
            raise BackendServerError(f"{self.client.url(self.path)}: the answer has no text at "
                                     f"text_path: {e.args[0]}", url=self.client.url(self.path)
                                     ) from None
        if not isinstance(text, str):
            raise BackendServerError(f"{self.client.url(self.path)}: {self.text_path} is "
                                     f"{type(text).__name__}, not text",
                                     url=self.client.url(self.path))
        scanner = StopScanner(params.stop)
        kept = scanner.feed(text) + scanner.flush()
        validate_json_text(kept, params.json_schema,
                           source=f"the reply of {self.client.url(self.path)}")
        counts = [self._reported(answer, p) for p in self.usage_paths]
        used = Usage(counts[0] if counts[0] is not None else
                     prompt_tokens if prompt_tokens is not None else self.count_tokens(prompt),
                     counts[1] if counts[1] is not None else self.count_tokens(kept))
        if kept:
            yield TokenEvent(kept)
        finish = "length" if not scanner.stopped and used.completion_tokens >= params.max_tokens \
            else "stop"
        yield Done(finish, used)  # type: ignore[arg-type]

    @staticmethod
    def _reported(answer: Any, path: str | None) -> int | None:
        if path is None:
            return None
        try:
            value = dig(answer, path)
        except KeyError:
            return None
        return value if isinstance(value, int) else None

    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        """Ask for the option by number and read the number back (a raw API gives no
        log-probabilities). Scores are 0 for the chosen option and -inf for the others.

        Raises:
            BackendError: the reply names no option.
        """
        listing = "\n".join(f"{i}. {o}" for i, o in enumerate(options, 1))
        ask = Message("system", f"Reply with the number of one of these options:\n{listing}")
        prompt = self.render([*messages, ask], speakers)
        reply = "".join(e.text for e in self.generate(
            prompt.text, SamplingParams(temperature=0, max_tokens=8, stop=prompt.stop))
            if isinstance(e, TokenEvent))
        found = re.search(r"\d+", reply)
        index = int(found.group()) - 1 if found else -1
        if not 0 <= index < len(options):
            named = [i for i, o in enumerate(options) if o.lower() in reply.lower()]
            if not named:
                raise BackendServerError(f"the reply names no option: {reply!r}",
                                         url=self.client.url(self.path))
            index = named[0]
        return picked_choice(options, index)

    def close(self) -> None:
        self.client.close()
