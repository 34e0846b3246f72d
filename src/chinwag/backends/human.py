"""The ``human`` backend: a person types each reply, for debugging agents, personas and games
without a model (as agent frameworks offer a human "LLM").

Each request shows the part of the prompt the person has not seen yet (the whole prompt the
first time, then what changed since the last one), then reads one line from the input. A JSON
Schema is checked on the typed reply (asking again when it does not match); ``choose`` lists
the options by number and reads a number.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from chinwag.backends.base import (
    BackendConfig,
    Capabilities,
    LanguageBackend,
    ModelInfo,
    estimate_tokens,
    picked_choice,
    refuse_unsupported,
)
from chinwag.backends.stops import StopScanner
from chinwag.errors import Cancelled, ContextOverflow, InvalidParams
from chinwag.json_schema import check_json_schema, json_problem, validate_json_text
from chinwag.prompting import Speakers
from chinwag.types import Choice, Done, EventStream, Message, SamplingParams, TokenEvent, Usage

if TYPE_CHECKING:
    from chinwag.models import Progress
    from chinwag.settings import Settings

ATTEMPTS = 3
"""Times a reply that breaks the JSON Schema, or a bad option number, is asked for again."""

CONTEXT_LENGTH = 32768
"""The pretend context window, tokens, when none is given."""


class HumanLLM(BackendConfig):
    """An LLM config for a person typing each reply on stdin (``model_id`` is the name shown)."""

    backend: Literal["human"]

    def build(self, settings: Settings, *, base_dir: Path | None = None,
              progress: Progress | None = None) -> HumanBackend:
        return HumanBackend(**self.arguments(exclude=("model_id",)),
                            name=self.model_id or "human")


class HumanBackend(LanguageBackend):
    """Replies typed by a person (see the module docstring).

    Args:
        input: where replies are read, one line each (default: stdin).
        output: where prompts and questions are shown (default: stderr, so that a program's
            own stdout stays clean).
        context_length: the pretend context window, tokens (estimated at 4 characters each).
        chat_format: how chats are shown (default: the persona's, else the transcript format).
        name: shown in ``chinwag models`` and the OpenAI API.

    Raises from ``generate``:
        ContextOverflow: the prompt's estimated tokens do not fit in ``context_length``.
        Cancelled: the input ended (Ctrl-D) before a reply.
        SchemaError: the schema is invalid, or the reply broke it ``ATTEMPTS`` times.
        InvalidParams: ``presence_penalty``, ``frequency_penalty``, ``logit_bias`` or
            ``logprobs`` set (a person has no logits; ``base.refuse_unsupported``).
    """

    capabilities = Capabilities(json_schema=True, choose=False, exact_token_count=False,
                                tools="constrained")

    def __init__(self, *, input: TextIO | None = None, output: TextIO | None = None,
                 context_length: int = CONTEXT_LENGTH, chat_format: str | None = None,
                 name: str = "human") -> None:
        self._input = input
        self._output = output
        self._context_length = context_length
        self.name = name
        self._set_chat_format(chat_format)
        self._seen = ""
        self._lock = threading.Lock()  # one person answers one request at a time

    @property
    def context_length(self) -> int:
        return self._context_length

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, n_ctx=self._context_length,
                         chat_format=self.chat_format.name, extra={"backend": "human"})

    def count_tokens(self, text: str) -> int:
        """An estimate: ``ceil(len(text) / 4)`` (a person has no tokenizer)."""
        return estimate_tokens(text)

    def _show(self, text: str) -> None:
        out = self._output or sys.stderr
        out.write(text)
        out.flush()

    def _read(self) -> str:
        line = (self._input or sys.stdin).readline()
        if not line:
            raise Cancelled("the human backend's input ended before a reply")
        return line.rstrip("\r\n")

    def _new_part(self, prompt: str) -> str:
        """What of ``prompt`` the person has not seen: all of it, unless it extends the last."""
        fresh = prompt[len(self._seen):] if prompt.startswith(self._seen) else prompt
        self._seen = prompt
        return fresh

    def generate(self, prompt: str, params: SamplingParams) -> EventStream:
        refuse_unsupported(params, (), self.name)  # a person has no logits to bias or report
        check_json_schema(params.json_schema)
        prompt_tokens = self.count_tokens(prompt)
        if prompt_tokens >= self._context_length:
            raise ContextOverflow(prompt_tokens, self._context_length)
        with self._lock:
            self._show(f"\n--- prompt ---\n{self._new_part(prompt)}\n--- your reply "
                       f"(one line) ---\n")
            if params.json_schema is not None:
                self._show(f"(JSON matching {json.dumps(params.json_schema)})\n")
            reply = self._read()
            for _ in range(ATTEMPTS - 1):
                problem = json_problem(reply, params.json_schema)
                if problem is None:
                    break
                self._show(f"that does not match the schema ({problem}); again:\n")
                reply = self._read()
            validate_json_text(reply, params.json_schema, source="the typed reply")
        return self._events(reply, prompt, params)

    def _events(self, reply: str, prompt: str, params: SamplingParams) -> EventStream:
        scanner = StopScanner(params.stop)
        text = scanner.feed(reply) + scanner.flush()
        if text:
            yield TokenEvent(text)
        yield Done("stop", Usage(self.count_tokens(prompt), self.count_tokens(text)))

    def _choose(self, messages: Sequence[Message], options: Sequence[str],
                speakers: Speakers) -> Choice:
        """Show the chat and the options, numbered; read the number of one.

        Raises:
            Cancelled: the input ended.
            InvalidParams: no valid number after ``ATTEMPTS`` tries.
        """
        with self._lock:
            listing = "\n".join(f"  {i}. {o}" for i, o in enumerate(options, 1))
            self._show(f"\n--- prompt ---\n{self._new_part(self.render(messages, speakers).text)}"
                       f"\n--- choose one (a number) ---\n{listing}\n")
            for _ in range(ATTEMPTS):
                answer = self._read().strip()
                if answer.isdigit() and 1 <= int(answer) <= len(options):
                    return picked_choice(options, int(answer) - 1)
                self._show(f"type a number from 1 to {len(options)}:\n")
        raise InvalidParams(f"no option chosen after {ATTEMPTS} tries", param="options")

