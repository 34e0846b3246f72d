"""What one running server holds: settings, the model, personas, the queue, metrics.

Built in the app's lifespan and reached by routes through ``get_state`` (no globals).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from chinwag.backends.base import LanguageBackend
from chinwag.chat.chatbot import Chatbot
from chinwag.chat.persona import Persona, load_personas
from chinwag.errors import UnknownPersona
from chinwag.server.metrics import Metrics
from chinwag.server.queue import GenerationQueue
from chinwag.settings import Settings
from chinwag.types import Done, Event, SamplingParams


@dataclass
class ServerState:
    """Everything the routes share.

    Attributes:
        settings: the server's settings.
        backend: the model.
        model_id: the model's id in the OpenAI API (``/v1/models``).
        personas: every persona by name, loaded at start.
        queue: the line for the model.
        metrics: Prometheus metrics.
    """

    settings: Settings
    backend: LanguageBackend
    model_id: str
    personas: dict[str, Persona]
    queue: GenerationQueue
    metrics: Metrics

    @classmethod
    def build(cls, settings: Settings, backend: LanguageBackend) -> ServerState:
        metrics = Metrics()
        return cls(settings=settings, backend=backend, model_id=backend.info().name,
                   personas=load_personas(settings.user_personas_dir()),
                   queue=GenerationQueue(settings.max_queue, metrics.queue_depth.set),
                   metrics=metrics)

    def persona(self, name: str) -> Persona:
        """The persona called ``name``.

        Raises:
            UnknownPersona: no such persona (HTTP 404).
        """
        if name not in self.personas:
            raise UnknownPersona(name, sorted(self.personas))
        return self.personas[name]

    def persona_or_model(self, model: str | None) -> Persona | None:
        """For an OpenAI ``model`` field: None for the model itself (or no model given), the
        persona of that name otherwise.

        Raises:
            UnknownPersona: neither the model's id nor a persona (HTTP 404).
        """
        if not model or model == self.model_id:
            return None
        return self.persona(model)

    async def generate(self, prompt: str, params: SamplingParams) -> AsyncIterator[Event]:
        """Stream a raw completion through the queue, recording metrics when it ends."""
        started = time.perf_counter()
        first: float | None = None
        async for event in self.queue.stream(lambda: self.backend.generate(prompt, params)):
            if isinstance(event, Done):
                now = time.perf_counter()
                ttft = None if first is None else first - started
                self.metrics.generation(event.usage, ttft, now - (first or now))
            elif first is None:
                first = time.perf_counter()
            yield event

    async def chat_turn(self, chatbot: Chatbot, text: str) -> AsyncIterator[str]:
        """One turn of a server-side conversation, streamed through the queue."""
        started = time.perf_counter()
        first: float | None = None
        async for piece in self.queue.stream(lambda: chatbot.send(text)):
            if first is None:
                first = time.perf_counter()
            yield piece
        if chatbot.last is not None:
            now = time.perf_counter()
            self.metrics.generation(chatbot.last.usage,
                                    None if first is None else first - started,
                                    now - (first or now))

    def close(self) -> None:
        self.queue.close()
        self.backend.close()


def get_state(request: Any) -> ServerState:
    """The ``ServerState`` of the app serving ``request`` (an HTTP request or websocket)."""
    state: ServerState = request.app.state.chinwag
    return state


def state_of(request: Request) -> ServerState:
    """FastAPI dependency: the server's state."""
    return get_state(request)


State = Annotated[ServerState, Depends(state_of)]
"""A route parameter typed ``State`` receives the server's state."""
