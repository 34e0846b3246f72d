"""text-generation-webui's legacy API, so that the stock Evennia LLM contrib works unchanged.

Evennia's ``evennia/contrib/rpg/llm/llm_client.py`` POSTs
``{"max_new_tokens": 250, "temperature": 0.7, "prompt": "..."}`` (plus what its settings add) to
``LLM_HOST + LLM_PATH`` and reads ``json["results"][0]["text"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request

from chinwag.server.auth import require_key
from chinwag.server.disconnect import unless_disconnected
from chinwag.server.schemas import GenerateRequest
from chinwag.server.state import State, requester
from chinwag.types import Done, Event, SamplingParams

router = APIRouter(dependencies=[Depends(require_key)])


@router.post("/api/v1/generate")
async def generate(body: GenerateRequest, state: State, request: Request) -> dict[str, Any]:
    """A raw continuation of ``prompt``: ``{"results": [{"text": ...}]}``."""
    params = body.params(SamplingParams())
    events = state.generate(body.prompt, params, requester(request))
    return {"results": [{"text": await unless_disconnected(request, _text(events))}]}


async def _text(events: AsyncIterator[Event]) -> str:
    return "".join([e.text async for e in events if not isinstance(e, Done)])
