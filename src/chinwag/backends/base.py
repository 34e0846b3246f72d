"""The interface every language backend implements, and what backends share.

A backend turns prompt text or messages into streamed tokens. It knows its context window and
tokenizer, can score options (``choose``) and, when ``capabilities.json_schema`` is true, can
constrain output to a JSON Schema (``SamplingParams.json_schema``).

Every backend is two classes: a ``LanguageBackend`` subclass, and a ``BackendConfig`` subclass
(the fields of its LLM config file, see ``chinwag.backends.config``) whose ``build`` makes it.
What every backend does the same way lives here once: the option check and the ``Choice`` of
``choose``, the refusal of sampling fields a backend cannot honour (``refuse_unsupported``),
the chat format a persona gets (``format_for``), the 4-characters-a-token estimate,
closing by ``with``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from chinwag.backends.tool_calls import constrained_tool_stream
from chinwag.errors import BackendError, InvalidParams
from chinwag.prompting import MODEL_TEMPLATE_NAME, resolve_chat_format
from chinwag.prompting.base import ChatFormat, Prompt, Speakers, reply_params
from chinwag.prompting.tools import with_tools
from chinwag.tools import Reply, ReplyCollector, ToolRequest
from chinwag.types import Choice, EventStream, Message, SamplingParams, ToolStream

if TYPE_CHECKING:
    from chinwag.models import Progress
    from chinwag.settings import Settings

ToolSupport = Literal["none", "constrained", "upstream"]

CHARS_PER_TOKEN = 4
"""Characters a token, for backends that cannot count tokens (OpenAI's rule of thumb for
English)."""


def estimate_tokens(text: str) -> int:
    """An estimate of the tokens of ``text``: ``ceil(len(text) / CHARS_PER_TOKEN)``."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def check_options(options: Sequence[str]) -> None:
    """The one rule for ``choose`` options on every backend.

    Raises:
        InvalidParams: no options, or an empty one (``param="options"``).
    """
    if not options or any(not o for o in options):
        raise InvalidParams("options must be non-empty strings", param="options")


OPTIONAL_PARAMS = ("presence_penalty", "frequency_penalty", "logit_bias", "logprobs")
"""The sampling fields (OpenAI's) that not every backend can honour: each backend honours
them or refuses them with ``refuse_unsupported``, never ignores them."""

_DEFAULTS = SamplingParams()


def refuse_unsupported(params: SamplingParams, supported: Collection[str], llm: str) -> None:
    """The one check of the ``OPTIONAL_PARAMS`` a backend does not honour.

    Args:
        params: the request's sampling settings.
        supported: the names of ``OPTIONAL_PARAMS`` the backend honours.
        llm: the LLM's name, for the message.

    Raises:
        InvalidParams: a field not in ``supported`` set to other than its default
            (``param`` the field, code ``unsupported_parameter``, as OpenAI answers for a
            model that does not take a parameter).
    """
    for name in OPTIONAL_PARAMS:
        if name not in supported and getattr(params, name) != getattr(_DEFAULTS, name):
            raise InvalidParams(f"{name} is not supported by the LLM {llm!r} (its backend "
                                "cannot honour it)", param=name, code="unsupported_parameter")


def scored_choice(options: Sequence[str], scores: Sequence[float]) -> Choice:
    """The option with the highest score (the first of equals), as a ``Choice``.

    Args:
        options: the options, non-empty.
        scores: one total log-probability per option, in the same order.
    """
    best = max(range(len(options)), key=scores.__getitem__)
    return Choice(index=best, option=options[best], logprob=scores[best], scores=list(scores))


def picked_choice(options: Sequence[str], index: int) -> Choice:
    """Option ``index``, picked without log-probabilities (a person, a number in a reply, a
    JSON enum): scored 0, the others -inf.

    Raises:
        IndexError: ``index`` is not a position in ``options``.
    """
    option = options[index]
    scores = [0.0 if i == index else -math.inf for i in range(len(options))]
    return Choice(index=index, option=option, logprob=0.0, scores=scores)


def continuation_choice(prompt: str, options: Sequence[str],
                        tokenize: Callable[[str], list[int]],
                        logprobs: Callable[[list[int], int], list[float]]) -> Choice:
    """The option most likely to follow ``prompt`` as raw text, by the model's own scores.

    Each option's score is the sum of the natural-log probabilities of the tokens it adds to
    the prompt; ``prompt + option`` is tokenized whole so merges at the seam are as the model
    sees them.

    Args:
        prompt: the text before the options.
        options: the options (checked by ``check_options``).
        tokenize: text -> token ids, as a whole prompt.
        logprobs: ``(tokens, start)`` -> the log-probability of each of ``tokens[start:]``
            given the tokens before it (``start`` >= 1).

    Raises:
        InvalidParams: no options, or an empty one.
        ContextOverflow, BackendError: as ``logprobs``.
    """
    check_options(options)
    base = tokenize(prompt)
    scores: list[float] = []
    for option in options:
        full = tokenize(prompt + option)
        shared = next((i for i, (a, b) in enumerate(zip(base, full, strict=False)) if a != b),
                      min(len(base), len(full)))
        start = max(1, min(shared, len(full) - 1))
        scores.append(math.fsum(logprobs(full, start)))
    return scored_choice(options, scores)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond plain streaming.

    Attributes:
        json_schema: enforces ``SamplingParams.json_schema`` during generation.
        choose: scores options by log-likelihood.
        exact_token_count: ``count_tokens`` uses the model's own tokenizer (not an estimate).
        tools: how it calls tools (``generate_tools``): ``constrained`` (chinwag decides by
            ``choose`` and writes the call under a grammar: ``backends.tool_calls``),
            ``upstream`` (the server behind it does: the tools are passed on), ``none``.
    """

    json_schema: bool = False
    choose: bool = False
    exact_token_count: bool = False
    tools: ToolSupport = "none"


@dataclass(frozen=True)
class ModelInfo:
    """What ``chinwag models`` shows about the model behind a backend.

    Attributes:
        name: a short id (the file name without extension, or the backend's own name).
        path: where the weights are, if they are a local file.
        size_bytes: file size, if known.
        parameters: number of parameters, if known.
        n_ctx: the context window in use, tokens.
        n_ctx_train: the context length the model was trained with, tokens, if known.
        chat_format: the chat format used for ``chat`` (a name).
        extra: anything else worth showing (architecture, quantisation, threads...).
    """

    name: str
    n_ctx: int
    chat_format: str
    path: str | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    n_ctx_train: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LanguageBackend(ABC):
    """A model that streams text. Subclasses implement the abstract methods; ``chat``,
    ``render`` and ``format_for`` come for free from ``chat_format`` (set it directly, or with
    ``_set_chat_format``). A backend is a context manager: leaving the ``with`` block closes it.

    Attributes:
        chat_format: how ``chat`` turns messages into prompt text.
        capabilities: what this backend supports beyond plain streaming.
        fixed_format: class attribute; True when ``chat_format`` stands whatever format a
            persona asks for (the scripted backend's given format).
    """

    chat_format: ChatFormat
    capabilities: Capabilities = Capabilities()
    fixed_format: bool = False
    _requested_format: str | None = None

    @property
    @abstractmethod
    def context_length(self) -> int:
        """The context window, in tokens (n_ctx): prompt plus reply must fit in it."""

    @property
    def max_parallel(self) -> int:
        """Generations this backend runs at once (more callers wait their turn inside it).
        The server lets this many requests generate together."""
        return 1

    def cache_stats(self) -> dict[str, int]:
        """Prompt-cache counters since start (``hits_slot``, ``hits_ram``, ``hits_disk``,
        ``misses``, ``evictions``, ``cached_tokens``, ``ram_bytes``...); empty for backends
        that keep no cache. ``/metrics`` exports them."""
        return {}

    def memory_bytes(self) -> int:
        """Bytes of memory the loaded model takes in this process (weights and KV cache, as
        the backend can tell); 0 for backends that hold none (a remote server, a human).
        The model registry budgets with it (``--models-memory``)."""
        return 0

    def engine_stats(self) -> dict[str, float]:
        """Step-loop counters since start for backends that run their own engine (``steps``,
        ``batch_tokens``, ``decode_seconds``, ``sample_seconds``, ``step_seconds``,
        ``admitted``, ``cancelled``, ``failed``: ``chinwag.engine.EngineStats``; ``slot_moves``;
        and the gauges ``active`` and ``waiting``); empty for the others. ``/metrics`` exports
        them."""
        return {}

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` becomes when sent as (part of) a prompt."""

    @abstractmethod
    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        """Stream a raw continuation of ``prompt``.

        Yields ``TokenEvent`` pieces, then exactly one ``Done``. Closing the iterator early
        stops generation and frees what it held.

        Raises:
            ContextOverflow: the prompt alone does not fit in the context window.
            SchemaError: ``params.json_schema`` cannot be enforced.
            BackendError: the model failed.
        """

    def choose(self, messages: Sequence[Message], options: Sequence[str],
               *, speakers: Speakers = Speakers()) -> Choice:
        """Pick the option the model finds most likely as the assistant's reply.

        Each option is scored by the sum of its tokens' log-probabilities after the rendered
        chat (not by parsing generated text) where the backend can; see each backend's
        ``_choose``.

        Raises:
            InvalidParams: no options, or an empty one (``check_options``), on every backend.
            ContextOverflow: the chat plus an option does not fit.
        """
        check_options(options)
        return self._choose(messages, options, speakers)

    @abstractmethod
    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        """``choose`` once the options passed ``check_options``."""

    @abstractmethod
    def info(self) -> ModelInfo:
        """Describe the model for people (``chinwag models``)."""

    def _set_chat_format(self, requested: str | None, model_template: str | None = None,
                         bos_token: str = "", eos_token: str = "") -> None:
        """Set ``chat_format``: the format the user named (``requested``), else the model's
        own template, else the transcript format (``resolve_chat_format``).

        Raises:
            ConfigError: ``requested`` names no known format.
            FormatError: the model's template does not compile.
        """
        self._requested_format = requested
        self.chat_format = resolve_chat_format(model_template=model_template,
                                               bos_token=bos_token, eos_token=eos_token,
                                               requested=requested)

    def format_for(self, persona_format: str | None) -> ChatFormat:
        """The chat format to use for a persona that asks for ``persona_format``.

        The backend's own ``chat_format`` wins when the user named it, when it is the model's
        own template, or when the backend's format is fixed (``fixed_format``); otherwise the
        persona's named format is honoured.

        Raises:
            ConfigError: ``persona_format`` names no known format.
        """
        if (not persona_format or self.fixed_format or self._requested_format
                or self.chat_format.name == MODEL_TEMPLATE_NAME):
            return self.chat_format
        return resolve_chat_format(model_template=None, persona_format=persona_format)

    def render(self, messages: Sequence[Message], speakers: Speakers = Speakers(),
               chat_format: ChatFormat | None = None) -> Prompt:
        """Render messages with ``chat_format`` (default: the backend's own); the prompt
        keeps the messages too (``Prompt.messages``)."""
        prompt = (chat_format or self.chat_format).render(messages, speakers)
        return replace(prompt, messages=tuple(messages))

    def generate_chat(self, prompt: Prompt, params: SamplingParams) -> EventStream:
        """Stream the assistant's reply to a rendered chat.

        By default this is ``generate(prompt.text, params)``. A backend whose server applies
        its own chat template (an OpenAI-compatible chat completions endpoint) sends
        ``prompt.messages`` instead. Raises what ``generate`` raises.
        """
        return self.generate(prompt.text, params)

    def generate_tools(self, prompt: Prompt, params: SamplingParams,
                       tools: ToolRequest) -> ToolStream:
        """Stream the reply to a rendered chat that offers ``tools``: text, or one call.

        ``prompt`` was rendered with the tools (``chat.turn.build_turn``). By
        ``capabilities.tools``: ``constrained`` backends decide by ``choose`` and write the
        call under the grammar of the tools' schemas (``backends.tool_calls``); ``upstream``
        ones override this to pass the tools to their server.

        Raises:
            InvalidParams: the backend cannot call tools (code ``tools_not_supported``, naming
                the LLM).
            OutputInvalid: the call's arguments fail their schema on every attempt.
            ContextOverflow, SchemaError, BackendError: as ``generate``.
        """
        if self.capabilities.tools == "none":
            raise InvalidParams(f"the LLM {self.info().name!r} cannot call tools (its backend "
                                "can neither constrain its output nor pass tools on)",
                                param="tools", code="tools_not_supported")
        return constrained_tool_stream(self, prompt, params, tools)

    def chat_tools(self, messages: Sequence[Message], tools: ToolRequest,
                   params: SamplingParams | None = None, *,
                   speakers: Speakers = Speakers(), chat_format: ChatFormat | None = None
                   ) -> Reply:
        """The whole answer to ``messages`` when ``tools`` are offered: text, or a call
        (``Reply.call``, its arguments valid by the tool's schema), with ``auto``'s decision
        and scores; for agent code that wants a structured call without HTTP. ``params``
        default to ``SamplingParams()``.

        The tools and tool messages are rendered by ``prompting.tools.with_tools`` (the
        model's template when it shows tools, else a plain block in the system prompt); the
        text is stripped of surrounding whitespace.

        Raises:
            What ``generate_tools`` raises, and ``FormatError``.
        """
        fmt = chat_format or self.chat_format
        preamble, kept, fmt = with_tools(fmt, [], messages, tools,
                                         upstream=self.capabilities.tools == "upstream")
        prompt = self.render([*preamble, *kept], speakers, fmt)
        stream = self.generate_tools(prompt, reply_params(prompt, params or SamplingParams()),
                                     tools)
        collector = ReplyCollector()
        try:
            for event in stream:
                reply = collector.add(event)
                if reply is not None:
                    return replace(reply, text=reply.text.strip())
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        raise BackendError("the stream ended without a Done event")

    def chat(self, messages: Sequence[Message], params: SamplingParams,
             *, speakers: Speakers = Speakers(), chat_format: ChatFormat | None = None
             ) -> EventStream:
        """Stream the assistant's reply to ``messages``.

        The format's stop strings are added to ``params.stop`` (``reply_params``: not under a
        JSON schema) so the reply never runs into the next turn. Raises what ``generate``
        raises, and ``FormatError``.
        """
        prompt = self.render(messages, speakers, chat_format)
        return self.generate_chat(prompt, reply_params(prompt, params))

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Free what the backend holds (model weights, connections). Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class BackendConfig(BaseModel, ABC):
    """The fields every LLM config file may have (``chinwag.backends.config``). Each backend
    subclasses it with ``backend: Literal["NAME"]`` and its own fields, and says in ``build``
    how the backend is made from them.

    A field named as the backend's constructor parameter reaches it through ``arguments``
    without being written again; settings fill what a config leaves out where a backend says so.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_id: str | None = Field(None, description="The model's name (sent to remote servers).")
    context_length: int | None = Field(None, ge=16, description="Context window, tokens.")
    chat_format: str | None = Field(None, description="Force a named chat format.")
    description: str = Field("", description="Shown by `chinwag llms`.")

    @abstractmethod
    def build(self, settings: Settings, *, base_dir: Path | None = None,
              progress: Progress | None = None) -> LanguageBackend:
        """The backend this config describes.

        Args:
            settings: chinwag's settings, for what the config leaves out (threads...).
            base_dir: the config file's folder; relative paths in the config are relative to
                it (None: the working directory).
            progress: called as ``progress(done, total)`` bytes while weights are assembled.

        Raises:
            ConfigError: a bad value the schema could not catch (a missing API key variable,
                a missing extra).
            ModelNotFound, ModelLoadError, BackendError: as the backend's constructor.
        """

    def memory_estimate(self, settings: Settings, base_dir: Path | None = None) -> int:
        """Bytes of memory the model is expected to take once loaded, told before loading it
        (the model registry makes room with it); 0: unknown or none (a remote server)."""
        return 0

    def arguments(self, *, exclude: Sequence[str] = ()) -> dict[str, Any]:
        """The fields that are set (not None), by name, as keyword arguments for the backend's
        constructor; ``backend``, ``description`` and ``exclude`` are left out."""
        return self.model_dump(exclude={"backend", "description", *exclude}, exclude_none=True)
