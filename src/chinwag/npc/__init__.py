"""Game NPCs for any game: a persona that players talk to, with per-player memory, thinking
lines while the model is slow, overheard lines, and cancellation (asyncio, no game imports).

    npc = NPC(persona, backend, store)
    async for event in npc.talk("player-7", "Hello!", {"user": "Ada", "location": "the inn"}):
        ...  # Thinking(line) | Token(text) | Reply(text, conversation)
             # | Failed(reason, fallback_line)
"""

from __future__ import annotations

from chinwag.npc.events import Failed, NPCEvent, Reply, Thinking, Token
from chinwag.npc.npc import CONTEXT_KEYS, NPC, ChatbotFactory, OnBusy, Runner, tidy_npc_reply

__all__ = ["CONTEXT_KEYS", "NPC", "ChatbotFactory", "Failed", "NPCEvent", "OnBusy", "Reply",
           "Runner", "Thinking", "Token", "tidy_npc_reply"]
