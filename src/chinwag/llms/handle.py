"""``ModelHandle``: one model of a ``ModelRegistry`` as a ``LanguageBackend``.

A chatbot, an NPC or a route holds the handle, never the loaded backend, so a model can be
unloaded and loaded again under them. Each call loads the model if needed and holds a lease
on it for the call (for a stream, until the stream is closed), so a model is never unloaded
under a running call. Calls come from worker threads (the generation queue, the thread pool);
on the event loop's thread a handle answers only while its model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from chinwag.backends.base import Capabilities, LanguageBackend, ModelInfo
from chinwag.prompting import ChatFormat, Prompt, Speakers
from chinwag.tools import ToolRequest
from chinwag.types import Choice, EventStream, Message, SamplingParams, ToolStream

if TYPE_CHECKING:
    from chinwag.llms.registry import Lease, ModelRegistry


T = TypeVar("T")


class _Held(Iterator[T]):
    """A backend's event stream that holds its model's lease until the stream ends or is
    closed (or is garbage-collected, never started)."""

    def __init__(self, events: Iterator[T], lease: Lease) -> None:
        self._events, self._lease = events, lease

    def __iter__(self) -> _Held[T]:
        return self

    def __next__(self) -> T:
        try:
            return next(self._events)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._lease.release()

    def __del__(self) -> None:
        self._lease.release()


class ModelHandle(LanguageBackend):
    """The model ``model`` of ``registry``, loaded on first use (see the module docstring).

    Args:
        registry: the server's models.
        model: the model's id.
    """

    def __init__(self, registry: ModelRegistry, model: str) -> None:
        self.registry = registry
        self.model_id = model

    def _lease(self) -> Lease:
        return self.registry.acquire_sync(self.model_id)

    def _loaded(self) -> LanguageBackend:
        """The loaded backend, for a question answered from Python objects that outlive an
        unload (its chat format, context length, capabilities); loaded first if needed.
        Anything that calls into llama.cpp takes a lease instead."""
        found = self.registry.loaded_backend(self.model_id)
        if found is not None:
            return found
        lease = self._lease()
        lease.release()
        return lease.backend

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return self._loaded().capabilities

    @property
    def context_length(self) -> int:
        return self._loaded().context_length

    @property
    def max_parallel(self) -> int:
        return self._loaded().max_parallel

    @property
    def chat_format(self) -> ChatFormat:  # type: ignore[override]
        return self._loaded().chat_format

    def memory_bytes(self) -> int:
        lease = self._lease()
        try:
            return lease.backend.memory_bytes()
        finally:
            lease.release()

    def count_tokens(self, text: str) -> int:
        lease = self._lease()
        try:
            return lease.backend.count_tokens(text)
        finally:
            lease.release()

    def tokenize(self, text: str) -> list[int] | None:
        """Token ids of ``text`` as a whole prompt, or None when the backend cannot list
        them."""
        lease = self._lease()
        try:
            ids = getattr(lease.backend, "tokenize", None)
            return ids(text) if ids is not None else None
        finally:
            lease.release()

    def _stream(self, start: Callable[[LanguageBackend], Iterator[T]]) -> Iterator[T]:
        """``start(backend)``'s stream, holding the model's lease until it is closed."""
        lease = self._lease()
        try:
            return _Held(start(lease.backend), lease)
        except BaseException:
            lease.release()
            raise

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        return self._stream(lambda backend: backend.generate(prompt, params))

    def generate_chat(self, prompt: Prompt, params: SamplingParams) -> EventStream:
        return self._stream(lambda backend: backend.generate_chat(prompt, params))

    def generate_tools(self, prompt: Prompt, params: SamplingParams,
                       tools: ToolRequest) -> ToolStream:
        return self._stream(lambda backend: backend.generate_tools(prompt, params, tools))

    def choose(self, messages: Sequence[Message], options: Sequence[str],
               *, speakers: Speakers = Speakers()) -> Choice:
        lease = self._lease()
        try:
            return lease.backend.choose(messages, options, speakers=speakers)
        finally:
            lease.release()

    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        return self.choose(messages, options, speakers=speakers)

    def format_for(self, persona_format: str | None) -> ChatFormat:
        return self._loaded().format_for(persona_format)

    def render(self, messages: Sequence[Message], speakers: Speakers = Speakers(),
               chat_format: ChatFormat | None = None) -> Prompt:
        return self._loaded().render(messages, speakers, chat_format)

    def info(self) -> ModelInfo:
        lease = self._lease()
        try:
            return lease.backend.info()
        finally:
            lease.release()

    def cache_stats(self) -> dict[str, int]:
        found = self.registry.loaded_backend(self.model_id)
        return found.cache_stats() if found is not None else {}

    def engine_stats(self) -> dict[str, float]:
        found = self.registry.loaded_backend(self.model_id)
        return found.engine_stats() if found is not None else {}

    def close(self) -> None:
        """Nothing: the registry owns the model."""
