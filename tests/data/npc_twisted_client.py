"""Talk to an NPC through chinwag's Twisted client, with the reactor running, as a game would.

Usage: ``python npc_twisted_client.py URL PERSONA TEXT TIMEOUT [CANCEL]``. Prints one JSON
line per thinking line as it arrives (``{"thinking": LINE}``, flushed at once, so a test can
answer it) and, at the end, ``{"result": {reply, conversation, error, fallback_line,
thinking}}``, or ``{"result": "cancelled"}`` when the talk ended in ``CancelledError``.
CANCEL, if given, cancels the talk: ``thinking`` at the first thinking line, or a number of
seconds after it started (a player who walks away); ``none-then-more`` does not, and after the
talk also calls ``overhear`` and ``cancel`` (printing ``{"overhear": BOOL, "cancel": BOOL}``).
"""

import dataclasses
import json
import sys

from twisted.internet import defer, reactor

from chinwag.integrations.twisted_client import NpcClient

url, persona, text, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cancel = sys.argv[5] if len(sys.argv) > 5 else None


def emit(message: dict) -> None:
    print(json.dumps(message), flush=True)


@defer.inlineCallbacks
def main():  # type: ignore[no-untyped-def]
    def on_thinking(line):  # type: ignore[no-untyped-def]
        emit({"thinking": line})
        if cancel == "thinking":
            reactor.callLater(0, talk.cancel)

    try:
        client = NpcClient(url, timeout=timeout)
        talk = client.talk(
            persona, npc="#7", player="#1", text=text,
            context={"name": "Bertha", "description": "an old baker", "location": "Mill",
                     "user": "Traveller"},
            thinking_after=0.5, on_thinking=on_thinking)
        if cancel not in (None, "thinking", "none-then-more"):
            reactor.callLater(float(cancel), talk.cancel)
        result = yield talk
        if cancel == "none-then-more":
            heard = yield client.overhear(persona, npc="#7", speaker="Miller",
                                          text="The wheel broke.", hearers=["#1"])
            stopped = yield client.cancel(persona, npc="#7", player="#1")
            emit({"overhear": heard, "cancel": stopped})
        emit({"result": dataclasses.asdict(result)})
    except defer.CancelledError:
        emit({"result": "cancelled"})
    finally:
        reactor.stop()


reactor.callWhenRunning(main)
reactor.run()
