"""The NPC API, for games that talk HTTP (any engine, any language): ``chinwag.npc`` over HTTP.

- ``POST /npc/{persona}/talk`` ``{"npc", "player", "text", "context"?, "thinking_after"?,
  "stream"?, "on_busy"?}``: with ``"stream": true`` (the default) server-sent events, each an
  ``event:`` line naming it and a ``data:`` line of JSON::

      event: thinking   data: {"line": "Bertha ponders your words..."}   (while slow)
      event: token      data: {"text": " Well"}                          (pieces of the reply)
      event: reply      data: {"text": "Well met!", "conversation": "<id>"}      (last)
      event: error      data: {"error": {"message", "type", "param", "code"},
                               "fallback_line": "Bertha shrugs."}               (last)

  with ``"stream": false`` one JSON ``{"reply", "conversation"}``, or the error with its
  status (OpenAI's shape, ``fallback_line`` beside the error object).
- ``POST /npc/{persona}/overhear`` ``{"npc", "speaker", "text", "hearers": [...]}``.
- ``POST /npc/{persona}/cancel`` ``{"npc", "player"}``: ``{"cancelled": true|false}``.

The same API keys, errors, fair queue (in the player's line) and metrics as every route:
turns run through ``ServerState.chat_turn``. Each (persona, npc) is one ``NPC`` held by the
server; a player talking while their last line is answered waits (``on_busy: queue``) or gets
409 (``reject``). A client that leaves cancels its turn, which is then forgotten.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from chinwag.errors import BackendError, ChinwagError
from chinwag.npc import Failed, NPCEvent, Reply, Thinking, Token
from chinwag.server.auth import require_key
from chinwag.server.disconnect import unless_disconnected
from chinwag.server.errors import error_event, from_chinwag
from chinwag.server.schemas import NPCCancelRequest, NPCOverhearRequest, NPCTalkRequest
from chinwag.server.state import State

router = APIRouter(prefix="/npc", dependencies=[Depends(require_key)])


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _failure(failed: Failed) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI error body of a failed turn, ``fallback_line`` added."""
    error: ChinwagError = failed.error or BackendError(failed.reason)
    return from_chinwag(error).status, {**error_event(error),
                                        "fallback_line": failed.fallback_line}


async def _last(events: AsyncIterator[NPCEvent]) -> NPCEvent:
    last: NPCEvent | None = None
    async for event in events:
        last = event
    assert last is not None  # a turn always ends with a Reply or Failed
    return last


@router.post("/{persona}/talk", response_model=None)
async def talk(persona: str, body: NPCTalkRequest, state: State,
               request: Request) -> JSONResponse | StreamingResponse:
    """What the NPC ``npc`` answers ``player`` (see the module docstring)."""
    npc = state.npc(state.persona(persona), body.npc)
    events = npc.talk(body.player, body.text, body.context,
                      thinking_after=body.thinking_after, on_busy=body.on_busy)
    if not body.stream:
        last = await unless_disconnected(request, _last(events))
        if isinstance(last, Failed):
            status, error = _failure(last)
            return JSONResponse(error, status_code=status)
        assert isinstance(last, Reply)
        return JSONResponse({"reply": last.text, "conversation": last.conversation})

    async def sse() -> AsyncIterator[str]:
        async with contextlib.aclosing(events):  # a client that leaves cancels the turn
            try:
                async for event in events:
                    if isinstance(event, Thinking):
                        yield _event("thinking", {"line": event.line})
                    elif isinstance(event, Token):
                        yield _event("token", {"text": event.text})
                    elif isinstance(event, Reply):
                        yield _event("reply", {"text": event.text,
                                               "conversation": event.conversation})
                    else:
                        yield _event("error", _failure(event)[1])
            except ChinwagError as e:  # NPCBusy: another line of the player got in first
                yield _event("error", _failure(Failed(str(e), "", e))[1])

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.post("/{persona}/overhear")
async def overhear(persona: str, body: NPCOverhearRequest, state: State) -> dict[str, Any]:
    """Remember ``speaker: text`` in each hearer's conversation with the NPC, no reply."""
    npc = state.npc(state.persona(persona), body.npc)
    await npc.overhear(body.speaker, body.text, body.hearers)
    return {"hearers": len(body.hearers)}


@router.post("/{persona}/cancel")
async def cancel(persona: str, body: NPCCancelRequest, state: State) -> dict[str, Any]:
    """Stop the NPC's answer to ``player``; nothing of that turn is remembered."""
    npc = state.npc(state.persona(persona), body.npc)
    return {"cancelled": npc.cancel(body.player)}
