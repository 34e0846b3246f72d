"""What every chat format is: messages in, prompt text and stop strings out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chinwag.types import Message, SamplingParams


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


def reply_params(prompt: Prompt, params: SamplingParams) -> SamplingParams:
    """The sampling settings for the reply to ``prompt``: ``params`` with the chat format's
    stop strings added after the caller's own (duplicates dropped), so the reply never runs
    into the next turn.

    Under a JSON schema the format's stop strings are left out: the output ends where the
    schema's grammar does, and a stop string such as ``"\nTraveller:"`` could cut the JSON
    short. The caller's own ``params.stop`` always applies.
    """
    if params.json_schema is not None:
        return params
    return params.with_(stop=tuple(dict.fromkeys((*params.stop, *prompt.stop))))
