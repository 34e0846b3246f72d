"""The transcript format, for base models that have no chat template.

A base model continues text; it chats best when the prompt reads like the script of a
conversation it has seen before (the approach of the original llama.cpp ``chat.sh`` examples)::

    <system prompt>

    Traveller: Hello!
    Bertha: Well met, traveller.
    Traveller: <the user's message>
    Bertha:

Generation stops when the model starts a new speaker's line (``"\\nTraveller:"``) or a blank
line, so the reply never contains the user's next turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from chinwag.errors import FormatError
from chinwag.prompting.base import Prompt, Speakers
from chinwag.types import Message


class TranscriptFormat:
    """Render messages as ``Name: text`` lines under a preamble made of the system messages."""

    name = "transcript"

    def render(self, messages: Sequence[Message], speakers: Speakers = Speakers()) -> Prompt:
        """Render ``messages`` as a script ending with ``"<assistant>:"``.

        Raises:
            FormatError: a speaker name is empty or contains a newline or a colon.
        """
        for who in (speakers.assistant, speakers.user):
            if not who.strip() or "\n" in who or ":" in who:
                raise FormatError(f"speaker name {who!r} cannot be used in a transcript")
        preamble = [m.content.strip() for m in messages if m.role == "system" and m.content.strip()]
        lines: list[str] = []
        for message in messages:
            if message.role == "user":
                lines.append(f"{speakers.user}: {message.content.strip()}")
            elif message.role == "assistant":
                lines.append(f"{speakers.assistant}: {message.content.strip()}")
        lines.append(f"{speakers.assistant}:")
        head = "\n\n".join(preamble)
        text = f"{head}\n\n" + "\n".join(lines) if head else "\n".join(lines)
        stop = (f"\n{speakers.user}:", f"\n{speakers.assistant}:", "\n\n")
        return Prompt(text=text, stop=stop, format=self.name)
