"""What an NPC's ``talk`` yields: plain frozen dataclasses, in this order::

    Thinking*  (the model is slow: after ``thinking_after`` seconds, then every
                ``thinking_every``, until the first token)
    Token*     (pieces of the reply as they are generated, for streaming clients)
    Reply | Failed   (exactly one, last)
"""

from __future__ import annotations

from dataclasses import dataclass

from chinwag.errors import ChinwagError


@dataclass(frozen=True)
class Thinking:
    """The NPC is still thinking: a line to show the player ("Bertha ponders your words...").

    Attributes:
        line: one of the persona's ``thinking_lines``, its placeholders filled in.
    """

    line: str


@dataclass(frozen=True)
class Token:
    """A piece of the reply as it is generated (raw: before ``Reply``'s tidying).

    Attributes:
        text: the piece.
    """

    text: str


@dataclass(frozen=True)
class Reply:
    """The NPC's answer, tidied: one speaker's words, no speaker cue, no next line.

    Attributes:
        text: the answer.
        conversation: the id of the stored conversation (this NPC's memory of the player).
    """

    text: str
    conversation: str | None = None


@dataclass(frozen=True)
class Failed:
    """The NPC could not answer (the model failed, the turn was cancelled, the reply was
    empty). Nothing of the turn is remembered: the player's line is not sent again.

    Attributes:
        reason: what went wrong, for logs.
        fallback_line: what the NPC says instead (one of the persona's ``fallback_lines``,
            filled in); ``""`` for a cancelled turn (the game asked for silence).
        error: the error, when there was one (``Cancelled`` for a cancelled turn).
    """

    reason: str
    fallback_line: str
    error: ChinwagError | None = None


NPCEvent = Thinking | Token | Reply | Failed
"""One event of ``NPC.talk``."""
