"""What every chat format is: messages in, prompt text and stop strings out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chinwag.types import Message


@dataclass(frozen=True)
class Speakers:
    """The names a transcript uses for the two sides of a chat.

    Attributes:
        assistant: the persona's name ("Bertha").
        user: the person's name ("Traveller").
    """

    assistant: str = "Assistant"
    user: str = "User"


@dataclass(frozen=True)
class Prompt:
    """A chat rendered for a model.

    Attributes:
        text: the prompt text, ending where the assistant's reply begins.
        stop: strings that end the reply (the start of the next turn, end-of-turn markers).
        format: the name of the chat format that made it.
        messages: the messages it was rendered from (backends whose server takes messages,
            such as an OpenAI chat completions endpoint, send these instead of ``text``).
    """

    text: str
    stop: tuple[str, ...]
    format: str
    messages: tuple[Message, ...] = ()


class ChatFormat(Protocol):
    """Turns messages into prompt text. Implementations: named formats, a model's own Jinja
    template, the transcript format for base models."""

    name: str

    def render(self, messages: Sequence[Message], speakers: Speakers = Speakers()) -> Prompt:
        """Render ``messages`` so that the text ends where the assistant's next reply starts.

        Raises:
            FormatError: the format cannot express these messages (e.g. roles out of order).
        """
        ...
