"""chinwag NPCs for Evennia games: ``ChinwagNPC`` and ``CmdChinwagTalk`` (``chinwag[evennia]``).

``ChinwagNPC`` is a subclass of Evennia's ``LLMNPC`` (``evennia.contrib.rpg.llm``), so builders
keep its attributes (``response_template``, ``thinking_timeout``), but it talks to chinwag's
NPC API instead of building a prompt itself: the server keeps each NPC's conversation with each
player, its persona and its thinking lines::

    create/drop villager:chinwag.integrations.evennia.ChinwagNPC
    talk villager Hello there!
    talk old man = Where is the mill?

Settings (``mygame/server/conf/settings.py``): ``CHINWAG_URL`` (default
``http://127.0.0.1:8000``), ``CHINWAG_API_KEY``, ``CHINWAG_TIMEOUT`` (seconds, default 60),
``CHINWAG_PERSONA`` (default ``villager``). An NPC's persona is ``npc.db.persona``, else its
class's ``persona``, else the setting.

What the model says reaches players as it was written: replies and thinking lines go into
``msg_contents`` as mapping values, which neither ``str.format`` nor Evennia's FuncParser reads
(a reply's ``{word}`` or ``$conj(am)`` is shown as such), and ``|`` is doubled so it is not
taken for colour markup.

This module imports Evennia and Django, so only a game (or Evennia's test runner) imports it;
``import chinwag`` never does.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from evennia.commands.command import Command
from evennia.contrib.rpg.llm.llm_npc import LLMNPC
from evennia.objects.objects import DefaultCharacter
from evennia.typeclasses.attributes import AttributeProperty
from evennia.utils.utils import inherits_from
from twisted.internet import defer

from chinwag.integrations.twisted_client import DEFAULT_TIMEOUT, NpcClient, TalkResult

__all__ = ["DEFAULT_FALLBACK_LINE", "ChinwagNPC", "CmdChinwagTalk", "literal"]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_PERSONA = "villager"
DEFAULT_FALLBACK_LINE = "... I'm sorry, I was distracted. Can you repeat?"

_SAID = re.compile(r'"(?P<speech>.*)"\s*$', re.DOTALL)  # 'Bob says, "hello"' -> hello


def literal(text: str) -> str:
    """``text`` ready to go into ``msg_contents`` as a mapping value: ``|`` doubled so that
    Evennia's colour markup shows it as typed. (Mapping values are never read by
    ``str.format`` or FuncParser, so ``{``, ``}`` and ``$`` need nothing.)"""
    return text.replace("|", "||")


class ChinwagNPC(LLMNPC):
    """An NPC that answers through chinwag's NPC API.

    Class attributes (set them in a subclass) or Attributes (``set npc/persona = bertha``):
    ``persona`` (the chinwag persona), ``overhear`` (pass what others ``say`` in the room to
    the NPC), and ``LLMNPC``'s ``response_template`` and ``thinking_timeout`` (seconds
    before the server sends a thinking line).
    """

    persona: str | None = None
    overhear = AttributeProperty(False, autocreate=False)

    # -- settings and seams -----------------------------------------------------------------

    @property
    def chinwag_persona(self) -> str:
        """``db.persona``, then the class's ``persona``, then ``settings.CHINWAG_PERSONA``."""
        return str(self.db.persona or type(self).persona
                   or getattr(settings, "CHINWAG_PERSONA", None) or DEFAULT_PERSONA)

    @property
    def chinwag_client(self) -> Any:
        """The `NpcClient` (one per NPC, made from the settings on first use); tests put a
        fake with the same ``talk``/``overhear``/``cancel`` methods in ``ndb.chinwag_client``."""
        if not self.ndb.chinwag_client:
            self.ndb.chinwag_client = NpcClient(
                getattr(settings, "CHINWAG_URL", None) or DEFAULT_URL,
                api_key=getattr(settings, "CHINWAG_API_KEY", None),
                timeout=float(getattr(settings, "CHINWAG_TIMEOUT", None) or DEFAULT_TIMEOUT))
        return self.ndb.chinwag_client

    @property
    def chinwag_reactor(self) -> Any:
        """The reactor that schedules checks (a ``task.Clock`` in ``ndb`` for tests)."""
        if self.ndb.chinwag_reactor:
            return self.ndb.chinwag_reactor
        from twisted.internet import reactor

        return reactor

    @property
    def chinwag_talks(self) -> dict[int, defer.Deferred[Any]]:
        """The talks waiting for an answer, by the talking character's id."""
        if self.ndb.chinwag_talks is None:
            self.ndb.chinwag_talks = {}
        talks: dict[int, defer.Deferred[Any]] = self.ndb.chinwag_talks
        return talks

    def chinwag_context(self, character: Any) -> dict[str, str]:
        """What the persona's prompt is told: the NPC's key, desc and location, and the
        character's name as the NPC sees it."""
        return {"name": self.key, "description": self.db.desc or "",
                "location": self.location.key if self.location else "",
                "user": character.get_display_name(self)}

    # -- talking ----------------------------------------------------------------------------

    def at_talked_to(self, speech: str, character: Any) -> defer.Deferred[Any]:
        """Send ``speech`` to the NPC's persona; show its thinking lines to the room as they
        come, then its reply (or its fallback line if the server fails or is too slow).

        Returns:
            A Deferred that fires when the answer has been shown (or dropped, if the
            character left); a talk already waiting for this character is cancelled.
        """
        self.chinwag_stop(character, tell_server=False)
        talk = self.chinwag_client.talk(
            self.chinwag_persona, npc=self.dbref, player=character.dbref, text=speech,
            context=self.chinwag_context(character),
            thinking_after=float(self.thinking_timeout or 0),
            on_thinking=lambda line: self._show_thinking(character, line))
        self.chinwag_talks[character.id] = talk
        talk.addCallback(self._answer, character)
        talk.addErrback(_ignore_cancel)

        def forget(passed: Any) -> Any:
            if self.chinwag_talks.get(character.id) is talk:
                del self.chinwag_talks[character.id]
            return passed

        talk.addBoth(forget)
        return talk

    def chinwag_stop(self, character: Any, tell_server: bool = True) -> bool:
        """Cancel the talk waiting for ``character`` (closing its connection) and, with
        ``tell_server``, ask the server to stop it. Returns whether one was waiting."""
        talk = self.chinwag_talks.pop(character.id, None)
        if talk is None or talk.called:
            return False
        talk.cancel()
        if tell_server:
            self.chinwag_client.cancel(self.chinwag_persona, npc=self.dbref,
                                       player=character.dbref)
        return True

    def _here(self, character: Any) -> bool:
        return bool(self.location) and character.location == self.location

    def _show_thinking(self, character: Any, line: str) -> None:
        if not self._here(character):
            self.chinwag_stop(character)
            return
        self.location.msg_contents("{chinwag_line}", mapping={"chinwag_line": literal(line)},
                                   from_obj=self)

    def _answer(self, result: TalkResult, character: Any) -> None:
        if not self._here(character):
            return  # they left: nobody to answer
        text = result.reply if result.reply else (result.fallback_line or DEFAULT_FALLBACK_LINE)
        name = character.get_display_name(self).replace("{", "{{").replace("}", "}}")
        template = self.response_template.format(name=name, response="{chinwag_reply}")
        self.location.msg_contents(
            template, mapping={"character": character, "chinwag_reply": literal(text)},
            from_obj=self)

    # -- hearing the room -------------------------------------------------------------------

    def at_msg_receive(self, text: Any = None, from_obj: Any = None, **kwargs: Any) -> bool:
        """Everything said or done in the room reaches the NPC here. A character it is
        answering who moves away cancels the answer (checked once the move is done); with
        ``overhear``, what others ``say`` goes to the server."""
        speaker = from_obj
        if speaker is None or speaker == self:
            return True
        if getattr(speaker, "id", None) in self.chinwag_talks:
            self.chinwag_reactor.callLater(0, self._check_still_here, speaker)
        message, options = (text[0], text[1] if len(text) > 1 else {}) \
            if isinstance(text, tuple) else (text, {})
        if self.overhear and isinstance(message, str) and options.get("type") == "say":
            said = _SAID.search(message)
            self.chinwag_overheard(speaker, said.group("speech") if said else message)
        return True

    def _check_still_here(self, character: Any) -> None:
        if not self._here(character):
            self.chinwag_stop(character)

    def chinwag_overheard(self, speaker: Any, speech: str) -> defer.Deferred[bool]:
        """Pass ``speech`` by ``speaker`` to the server, with the characters who heard it
        (the ids the NPC's conversations are kept by). Fires False when nobody else heard."""
        hearers = [obj.dbref for obj in (self.location.contents if self.location else [])
                   if obj not in (self, speaker) and inherits_from(obj, DefaultCharacter)]
        if not hearers:
            return defer.succeed(False)  # nobody's conversation to remember it in
        result: defer.Deferred[bool] = self.chinwag_client.overhear(
            self.chinwag_persona, npc=self.dbref, speaker=speaker.get_display_name(self),
            text=speech, hearers=hearers)
        return result


def _ignore_cancel(failure: Any) -> None:
    failure.trap(defer.CancelledError)  # a cancelled talk (they left) ends quietly


class CmdChinwagTalk(Command):
    """
    Talk to an NPC

    Usage:
        talk npc <something>
        talk npc with spaces in name = <something>

    The NPC answers everyone in the room.
    """

    key = "talk"
    locks = "cmd:all()"

    def parse(self) -> None:
        args = self.args.strip()
        if "=" in args:
            name, speech = args.split("=", 1)
        else:
            name, _, speech = args.partition(" ")
        self.target_name = name.strip()
        self.speech = speech.strip()

    def func(self) -> None:
        if not self.target_name:
            self.caller.msg("Talk to whom?")
            return
        if not self.speech:
            self.caller.msg("Say what? (talk NAME WORDS, or talk NAME WITH SPACES = WORDS)")
            return
        target = self.caller.search(self.target_name)
        if not target:
            return
        if self.caller.location:
            self.caller.location.msg_contents(
                "$You() $conj(say) (to $You(target)): {chinwag_speech}",
                mapping={"target": target, "chinwag_speech": literal(self.speech)},
                from_obj=self.caller)
        if hasattr(target, "at_talked_to"):
            target.at_talked_to(self.speech, self.caller)
        else:
            self.caller.msg(f"{target.key} doesn't seem to want to talk to you.")
