"""The interface every language backend implements.

A backend turns prompt text or messages into streamed tokens. It knows its context window and
tokenizer, can score options (``choose``) and, when ``capabilities.json_schema`` is true, can
constrain output to a JSON Schema (``SamplingParams.json_schema``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema

from chinwag.errors import SchemaError
from chinwag.prompting.base import ChatFormat, Prompt, Speakers
from chinwag.types import Choice, EventStream, Message, SamplingParams


def check_json_schema(schema: dict[str, Any] | None) -> None:
    """Check that ``schema`` (when given) is a valid JSON Schema, by the metaschema of its
    ``$schema`` draft (2020-12 when it names none).

    Raises:
        SchemaError: it is not valid (the message says where).
    """
    if schema is None:
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise SchemaError(f"not a valid JSON Schema: {e.message}") from None


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond plain streaming.

    Attributes:
        json_schema: enforces ``SamplingParams.json_schema`` during generation.
        choose: scores options by log-likelihood.
        exact_token_count: ``count_tokens`` uses the model's own tokenizer (not an estimate).
    """

    json_schema: bool = False
    choose: bool = False
    exact_token_count: bool = False


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
    """A model that streams text. Subclasses implement the abstract methods; ``chat`` and
    ``render`` come for free from ``chat_format``.

    Attributes:
        chat_format: how ``chat`` turns messages into prompt text.
        capabilities: what this backend supports beyond plain streaming.
    """

    chat_format: ChatFormat
    capabilities: Capabilities = Capabilities()

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

    @abstractmethod
    def choose(self, messages: Sequence[Message], options: Sequence[str],
               *, speakers: Speakers = Speakers()) -> Choice:
        """Pick the option the model finds most likely as the assistant's reply.

        Each option is scored by the sum of its tokens' log-probabilities after the rendered
        chat (not by parsing generated text).

        Raises:
            InvalidParams: ``options`` is empty.
            ContextOverflow: the chat plus an option does not fit.
        """

    @abstractmethod
    def info(self) -> ModelInfo:
        """Describe the model for people (``chinwag models``)."""

    def format_for(self, persona_format: str | None) -> ChatFormat:
        """The chat format to use for a persona that asks for ``persona_format``.

        The backend's own format wins when it comes from the model or the user; backends whose
        model has no template override this to honour the persona's named format.
        """
        return self.chat_format

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

    def chat(self, messages: Sequence[Message], params: SamplingParams,
             *, speakers: Speakers = Speakers(), chat_format: ChatFormat | None = None
             ) -> EventStream:
        """Stream the assistant's reply to ``messages``.

        The format's stop strings are added to ``params.stop`` so the reply never runs into the
        next turn. Raises what ``generate`` raises, and ``FormatError``.
        """
        prompt = self.render(messages, speakers, chat_format)
        stop = tuple(dict.fromkeys((*params.stop, *prompt.stop)))
        return self.generate_chat(prompt, replace(params, stop=stop))

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Free what the backend holds (model weights, connections). Idempotent."""
