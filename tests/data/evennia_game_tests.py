"""chinwag's Evennia NPC inside a real Evennia game, on Evennia's own test classes.

tests/integrations/test_evennia.py copies this module into a fresh game folder
(``evennia --init``) and runs it with ``evennia test --settings settings.py``. The NPC's
HTTP calls go to `FakeClient`, put in the NPC's ``ndb.chinwag_client`` (the client seam):
these tests check what Evennia does with an answer (room messages through ``msg_contents``
and Evennia's FuncParser, command parsing, moves, Attributes and settings), not HTTP.
"""

from unittest.mock import Mock

from django.test import override_settings
from evennia.utils.ansi import parse_ansi
from evennia.utils.create import create_object
from evennia.utils.test_resources import EvenniaCommandTest
from twisted.internet import defer, task

from chinwag.integrations.evennia import DEFAULT_FALLBACK_LINE, ChinwagNPC, CmdChinwagTalk
from chinwag.integrations.twisted_client import TalkResult


class FakeClient:
    """Records calls; each talk waits on a Deferred the test fires."""

    def __init__(self):
        self.talks = []  # (persona, kwargs, deferred)
        self.cancels = []
        self.overheard = []

    def talk(self, persona, **kwargs):
        waiting = defer.Deferred()
        self.talks.append((persona, kwargs, waiting))
        return waiting

    def cancel(self, persona, **kwargs):
        self.cancels.append((persona, kwargs))
        return defer.succeed(True)

    def overhear(self, persona, **kwargs):
        self.overheard.append((persona, kwargs))
        return defer.succeed(True)


class BerthaNPC(ChinwagNPC):
    persona = "bertha-class"


def seen(receiver):
    """What ``receiver`` was shown, as a player's client renders it (markup parsed)."""
    texts = []
    for call in receiver.msg.call_args_list:
        text = call.kwargs.get("text", call.args[0] if call.args else None)
        if isinstance(text, tuple):
            text = text[0]
        if text is not None:
            texts.append(parse_ansi(text, strip_ansi=True))
    return texts


class ChinwagNPCTest(EvenniaCommandTest):
    def setUp(self):
        super().setUp()
        self.npc = create_object(ChinwagNPC, key="Bertha", location=self.room1,
                                 home=self.room1)
        self.npc.db.desc = "an old baker"
        self.client = FakeClient()
        self.npc.ndb.chinwag_client = self.client
        self.clock = task.Clock()
        self.npc.ndb.chinwag_reactor = self.clock
        self.char2.msg = Mock()  # a bystander in the room

    def tearDown(self):
        self.npc.delete()
        super().tearDown()

    def talk(self, text="Hello"):
        done = self.npc.at_talked_to(text, self.char1)
        persona, kwargs, waiting = self.client.talks[-1]
        return done, persona, kwargs, waiting

    def test_reply_reaches_the_room(self):
        done, _, kwargs, waiting = self.talk()
        waiting.callback(TalkResult(reply="Fresh bread today!"))
        self.assertTrue(done.called)
        self.assertIn("Bertha says (to Char): Fresh bread today!", seen(self.char2))
        self.assertEqual(kwargs["text"], "Hello")
        self.assertEqual(kwargs["npc"], self.npc.dbref)
        self.assertEqual(kwargs["player"], self.char1.dbref)

    def test_context_is_the_npc_its_room_and_the_speaker(self):
        _, _, kwargs, _ = self.talk()
        self.assertEqual(kwargs["context"], {"name": "Bertha", "description": "an old baker",
                                             "location": "Room", "user": "Char"})
        self.assertEqual(kwargs["thinking_after"], 2.0)

    def test_every_thinking_line_reaches_the_room(self):
        _, _, kwargs, waiting = self.talk()
        kwargs["on_thinking"]("Bertha wipes her hands on her apron...")
        kwargs["on_thinking"]("Bertha hums, thinking.")
        waiting.callback(TalkResult(reply="Yes?"))
        shown = seen(self.char2)
        self.assertIn("Bertha wipes her hands on her apron...", shown)
        self.assertIn("Bertha hums, thinking.", shown)

    def test_braces_dollar_and_markup_in_a_reply_come_through_literally(self):
        """The stock contrib raises KeyError on ``{word}`` and shows "I is here" for
        ``I $conj(am) here``; a reply must reach players exactly as the model wrote it."""
        reply = "I $conj(am) here, {word} } { $You() costs $5 | |rred \\o/"
        _, _, kwargs, waiting = self.talk()
        kwargs["on_thinking"]("{name} $conj(ponder) ...")
        waiting.callback(TalkResult(reply=reply))
        shown = seen(self.char2)
        self.assertIn(f"Bertha says (to Char): {reply}", shown)
        self.assertIn("{name} $conj(ponder) ...", shown)

    def test_a_failed_talk_shows_the_persona_fallback_line(self):
        _, _, _, waiting = self.talk()
        waiting.callback(TalkResult(error="model overloaded",
                                    fallback_line="Bertha shrugs, busy {today}."))
        self.assertIn("Bertha says (to Char): Bertha shrugs, busy {today}.", seen(self.char2))

    def test_a_failed_talk_without_fallback_shows_the_default_line(self):
        _, _, _, waiting = self.talk()
        waiting.callback(TalkResult(error="no answer from chinwag within 60 s"))
        self.assertIn(f"Bertha says (to Char): {DEFAULT_FALLBACK_LINE}", seen(self.char2))

    def test_talk_to_a_name_with_spaces_parses(self):
        old_man = create_object(ChinwagNPC, key="old man", location=self.room1,
                                home=self.room1)
        old_man.ndb.chinwag_client = self.client
        self.call(CmdChinwagTalk(), "old man = hi there", "You say (to old man): hi there")
        _, kwargs, _ = self.client.talks[-1]
        self.assertEqual(kwargs["npc"], old_man.dbref)
        self.assertEqual(kwargs["text"], "hi there")
        old_man.delete()

    def test_talk_without_words_asks_what_to_say(self):
        self.call(CmdChinwagTalk(), "Bertha", "Say what?")
        self.assertEqual(self.client.talks, [])

    def test_talk_without_equals_takes_the_first_word(self):
        cmd = CmdChinwagTalk()
        cmd.args = " Bertha  how are you?"
        cmd.parse()
        self.assertEqual((cmd.target_name, cmd.speech), ("Bertha", "how are you?"))

    def test_what_the_player_says_is_shown_literally(self):
        self.call(CmdChinwagTalk(), "Bertha = I $conj(am) {x}",
                  "You say (to Bertha): I $conj(am) {x}")

    def test_leaving_the_room_cancels_the_talk(self):
        done, _, _, waiting = self.talk()
        self.char1.move_to(self.room2)
        self.clock.advance(0)
        self.assertTrue(waiting.called, "the request was not cancelled")
        self.assertTrue(done.called)
        self.assertEqual(self.client.cancels,
                         [("villager", {"npc": self.npc.dbref, "player": self.char1.dbref})])
        self.assertEqual(self.npc.chinwag_talks, {})

    def test_a_reply_after_a_quiet_move_is_not_shown(self):
        _, _, _, waiting = self.talk()
        self.char1.move_to(self.room2, quiet=True)
        self.char1.msg = Mock()
        waiting.callback(TalkResult(reply="Where did you go?"))
        shown = seen(self.char2) + seen(self.char1)
        self.assertFalse([text for text in shown if "Where did you go?" in text])

    def test_persona_lookup_order_db_then_class_then_setting(self):
        bertha = create_object(BerthaNPC, key="Bertha2", location=self.room1)
        with override_settings(CHINWAG_PERSONA="from-setting"):
            self.assertEqual(self.npc.chinwag_persona, "from-setting")
            self.assertEqual(bertha.chinwag_persona, "bertha-class")
            bertha.db.persona = "from-db"
            self.assertEqual(bertha.chinwag_persona, "from-db")
        self.assertEqual(self.npc.chinwag_persona, "villager")
        bertha.delete()

    def test_talk_uses_the_persona(self):
        self.npc.db.persona = "baker"
        _, persona, _, _ = self.talk()
        self.assertEqual(persona, "baker")

    def test_overhear_passes_what_others_say(self):
        self.npc.overhear = True
        self.char2.at_say("The mill burned down!")
        self.assertEqual(self.client.overheard, [("villager", {
            "npc": self.npc.dbref, "speaker": "Char2", "text": "The mill burned down!",
            "hearers": [self.char1.dbref]})])

    def test_nothing_is_overheard_when_nobody_else_hears(self):
        self.npc.overhear = True
        self.char1.move_to(self.room2, quiet=True)
        self.char2.at_say("Anyone here?")
        self.assertEqual(self.client.overheard, [])

    def test_without_overhear_nothing_is_passed(self):
        self.char2.at_say("The mill burned down!")
        self.assertEqual(self.client.overheard, [])
