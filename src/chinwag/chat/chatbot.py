"""``Chatbot``: a persona talking with one person, on any backend.

Each turn sends the persona's preamble (system prompt and example exchanges, never trimmed),
as much recent history as fits, and the new message. History lives in memory for now.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from chinwag.backends.base import LanguageBackend
from chinwag.chat.fitting import fit_messages, tidy_reply
from chinwag.chat.persona import Persona
from chinwag.prompting.base import ChatFormat, Prompt
from chinwag.types import Done, Event, Message, SamplingParams


class Chatbot:
    """A conversation between a persona and one person.

    Args:
        backend: the model.
        persona: who the chatbot is.
        user: the person's name in the transcript (default: the persona's ``user_name``).
        params: sampling settings to start from (default: chinwag's defaults), under the
            persona's own settings.
        **overrides: sampling settings that win over the persona's (``temperature=0``...).

    Raises:
        InvalidParams: an override is unknown or out of range.
    """

    def __init__(self, backend: LanguageBackend, persona: Persona, *, user: str | None = None,
                 params: SamplingParams | None = None, **overrides: Any) -> None:
        self.backend = backend
        self.user = user
        self.history: list[Message] = []
        self.last: Done | None = None
        self._base_params = params
        self._overrides: dict[str, Any] = {}
        self.persona = persona
        self._apply(persona)
        self.set(**overrides)

    def _apply(self, persona: Persona) -> None:
        self.persona = persona
        self.chat_format: ChatFormat = self.backend.format_for(persona.chat_format)
        self.params = persona.sampling_params(self._base_params).with_(**self._overrides)

    def set(self, **changes: Any) -> SamplingParams:
        """Change sampling settings for the next turns; returns the settings now in force.

        Raises:
            InvalidParams: an unknown name or a value out of range (nothing is changed).
        """
        params = self.params.with_(**changes)
        self._overrides.update(changes)
        self.params = params
        return params

    def switch(self, persona: Persona) -> None:
        """Talk as another persona from the next turn on; the history is kept."""
        self._apply(persona)

    def reset(self) -> None:
        """Forget the conversation (the persona and settings stay)."""
        self.history.clear()
        self.last = None

    def prompt_for(self, text: str) -> tuple[Prompt, int]:
        """The prompt the next turn would send for ``text``, and how many history messages it
        had to leave out to fit.

        The oldest history messages are dropped (a user turn with its answer) until the prompt
        plus ``max_tokens`` fits in the context window; the preamble is never dropped.

        Raises:
            ContextOverflow: the preamble and ``text`` alone do not fit (both counts given).
        """
        fitted = fit_messages(self.backend, self.persona.preamble(self.user),
                              [*self.history, Message("user", text)],
                              speakers=self.persona.speakers(self.user),
                              chat_format=self.chat_format, reserve=self.params.max_tokens)
        return fitted.prompt, fitted.dropped

    def send(self, text: str) -> Generator[str, None, None]:
        """Send one message; yields the reply in pieces as they are generated.

        The reply is stripped of surrounding whitespace. Closing the iterator early (Ctrl-C)
        stops generation; the message and the part of the reply produced so far stay in the
        history. After the last piece, ``last`` holds the ``Done`` event (finish reason, usage).

        Raises:
            ContextOverflow: the message cannot fit even with no history.
            BackendError: the model failed.
        """
        prompt, _ = self.prompt_for(text)
        # JSON output ends where its grammar does; a format's stop strings could cut it short
        stop = self.params.stop if self.params.json_schema is not None else \
            tuple(dict.fromkeys((*self.params.stop, *prompt.stop)))
        events = self.backend.generate(prompt.text, self.params.with_(stop=stop))
        return self._turn(text, events)

    def _turn(self, text: str, events: Iterator[Event]) -> Generator[str, None, None]:
        parts: list[str] = []
        try:
            for event in tidy_reply(events):
                if isinstance(event, Done):
                    self.last = event
                    break
                parts.append(event.text)
                yield event.text
        finally:
            if hasattr(events, "close"):
                events.close()
            self.history += [Message("user", text), Message("assistant", "".join(parts))]
