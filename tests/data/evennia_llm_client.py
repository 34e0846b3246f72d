"""Ask a server for one answer through Evennia's stock LLM client, as an LLM NPC would.

Usage: ``python evennia_llm_client.py URL``; prints ``{"text": ...}`` as JSON.

It runs ``evennia/contrib/rpg/llm/llm_client.py`` from the installed Evennia, unchanged, with
the settings a game would give it (``LLM_HOST``, ``LLM_PATH``) on top of Evennia's defaults.
Two things a running game sets up are done here by hand: the module is loaded from its file,
because the package's ``__init__`` also imports the NPC typeclass, which needs a game database;
and ``evennia.logger`` is set, as ``evennia._init()`` does. The client's own body, headers and
response parsing are untouched.
"""

import importlib.util
import json
import sys

import evennia
from django.conf import settings
from evennia import settings_default

settings.configure(settings_default, DEBUG=False, LLM_HOST=sys.argv[1],
                   LLM_PATH="/api/v1/generate")

from evennia.utils import logger  # noqa: E402
from twisted.internet import defer, reactor  # noqa: E402

evennia.logger = logger
_path = f"{evennia.__path__[0]}/contrib/rpg/llm/llm_client.py"
_spec = importlib.util.spec_from_file_location("evennia_llm_client", _path)
assert _spec is not None and _spec.loader is not None
llm_client = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(llm_client)

result: dict[str, str] = {}


@defer.inlineCallbacks
def main():  # type: ignore[no-untyped-def]
    try:
        # an LLM NPC sends its prompt as a list of lines: persona, history, "Name:"
        result["text"] = yield llm_client.LLMClient().get_response(
            ["You are Bertha, an old villager.", "Traveller: Hello!", "Bertha:"])
    finally:
        reactor.stop()


reactor.callWhenRunning(main)
reactor.run()
print(json.dumps(result))
