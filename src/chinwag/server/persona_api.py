"""Persona endpoints, the contract of existing organisation chat services, kept exactly:

- ``GET|POST /gpt/{persona}`` with ``prompt`` (query string or form): the answer, text/plain.
- ``POST /toil/{persona}`` with JSON ``{"prompt", "schema"?}``: a JSON object, valid against
  the schema when one is given (enforced while generating).
- ``WS /gpt-socket/{persona}``: each text frame is a prompt; the answer comes back as frames of
  tokens, then one frame ``<END>``.

Memory: with a ``user`` (``/gpt`` query string or form, the ``/toil`` body, the socket's query
string) the conversation is kept in the database per (persona, user) and resumed on the next
request, by any endpoint; ``conversation=ID`` picks one conversation by id. Without a user a
request starts a fresh conversation that is not stored (on a socket it lasts as long as the
socket). The conversation's id comes back in the ``X-Conversation-Id`` header.

Knowledge: a prompt may start with ``|CONTEXT|text|/CONTEXT|``, a URL or
``|RAG|name|/RAG|`` (``chinwag.knowledge``); ``/toil`` also takes ``text`` (a URL or raw
text) and ``on_source_error``. What went into the answer comes back as the ``sources`` list:
a top-level key of ``/toil``'s object, the ``X-Chinwag-Sources`` header (JSON) of ``/gpt``,
and, on a socket opened with ``?status=1``, JSON frames before the tokens:
``{"type": "status", "text": "Reading https://..."}`` while fetching, then
``{"type": "sources", "sources": [...]}``. Clients that do not ask get tokens and ``<END>``
only, as before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from chinwag.chat.chatbot import Chatbot
from chinwag.errors import ChinwagError, InvalidParams
from chinwag.server.auth import check_key, key_from_headers, require_key
from chinwag.server.disconnect import unless_disconnected
from chinwag.server.errors import APIError, from_chinwag
from chinwag.server.schemas import ToilRequest
from chinwag.server.state import State, get_state, requester

log = logging.getLogger("chinwag.server")
router = APIRouter()
END = "<END>"
TOIL_MIN_TOKENS = 512  # room for a JSON object, whatever the persona's max_tokens


async def _param(request: Request, name: str) -> str | None:
    """A parameter from the query string, else (for a POST) from the form."""
    value: Any = request.query_params.get(name)
    if value is None and request.method == "POST":
        value = (await request.form()).get(name)
    return value if isinstance(value, str) else None


async def _joined(pieces: AsyncIterator[str]) -> str:
    return "".join([piece async for piece in pieces])


def _conversation_header(chatbot: Chatbot) -> dict[str, str]:
    cid = chatbot.conversation_id
    return {"X-Conversation-Id": cid} if cid else {}


def _sources(chatbot: Chatbot) -> list[dict[str, Any]]:
    return [report.as_dict() for report in chatbot.last_sources]


def _headers(chatbot: Chatbot) -> dict[str, str]:
    """``X-Conversation-Id``, and ``X-Chinwag-Sources`` (JSON, ASCII) when knowledge was
    used."""
    headers = _conversation_header(chatbot)
    if chatbot.last_sources:
        headers["X-Chinwag-Sources"] = json.dumps(_sources(chatbot), ensure_ascii=True)
    return headers


async def _prompt_from(request: Request) -> str:
    prompt = await _param(request, "prompt")
    if prompt is None or not prompt.strip():
        raise APIError(400, "the 'prompt' parameter is required (query string or form)",
                       param="prompt", code="missing_required_parameter")
    return prompt


@router.api_route("/gpt/{persona}", methods=["GET", "POST"], response_class=PlainTextResponse,
                  dependencies=[Depends(require_key)])
async def gpt(persona: str, request: Request,
              state: State) -> PlainTextResponse:
    """The persona's answer to ``prompt``, as plain text."""
    found = state.persona(persona)
    prompt = await _prompt_from(request)
    chatbot = await run_in_threadpool(state.chatbot, found, await _param(request, "user") or None,
                                      await _param(request, "conversation") or None)
    text = await unless_disconnected(request, _joined(state.chat_turn(chatbot, prompt,
                                                                      requester(request))))
    return PlainTextResponse(text, headers=_headers(chatbot))


@router.post("/toil/{persona}", dependencies=[Depends(require_key)])
async def toil(persona: str, body: ToilRequest, state: State,
               request: Request) -> JSONResponse:
    """A JSON object answering ``prompt``, valid against ``schema`` when given."""
    found = state.persona(persona)
    schema = body.schema_ if body.schema_ is not None else {"type": "object"}
    if not isinstance(schema, dict):
        raise InvalidParams("schema must be a JSON Schema object", param="schema")
    hint = ("Answer with a JSON object that follows this JSON Schema: " + json.dumps(schema)
            if body.schema_ is not None else "Answer with a JSON object.")
    chatbot = await run_in_threadpool(state.chatbot, found, body.user, body.conversation)
    chatbot.set(json_schema=schema, max_tokens=max(chatbot.params.max_tokens, TOIL_MIN_TOKENS))
    text = await unless_disconnected(request, _joined(state.chat_turn(
        chatbot, f"{body.prompt}\n{hint}", requester(request), given=body.text,
        on_source_error=body.on_source_error)))
    try:
        value: Any = json.loads(text)
    except ValueError:
        raise APIError(500, "the model's answer was cut before the JSON object was complete "
                       f"({chatbot.last.usage.completion_tokens if chatbot.last else 0} tokens)",
                       type="server_error", code="incomplete_json") from None
    answer = value if isinstance(value, dict) else {"result": value}
    if chatbot.last_sources:
        answer = {**answer, "sources": _sources(chatbot)}
    return JSONResponse(answer, headers=_headers(chatbot))


@router.websocket("/gpt-socket/{persona}")
async def gpt_socket(websocket: WebSocket, persona: str) -> None:
    """Chat over a websocket: prompt frames in, token frames and ``<END>`` out."""
    state = get_state(websocket)
    try:
        check_key(state.settings.api_keys(), key_from_headers(websocket.headers)
                  or websocket.query_params.get("api_key"))
        found = state.persona(persona)
        chatbot = await run_in_threadpool(state.chatbot, found,
                                          websocket.query_params.get("user") or None,
                                          websocket.query_params.get("conversation") or None)
    except (APIError, ChinwagError) as e:
        mapped = e if isinstance(e, APIError) else from_chinwag(e)
        await websocket.close(code={401: 4401, 404: 4404}.get(mapped.status, 4400),
                              reason=mapped.message[:120])
        return
    await websocket.accept(headers=[(k.lower().encode(), v.encode())
                                    for k, v in _conversation_header(chatbot).items()])
    statuses = websocket.query_params.get("status") in ("1", "true")

    async def status(line: str) -> None:
        await websocket.send_text(json.dumps({"type": "status", "text": line}))

    try:
        while True:
            prompt = await websocket.receive_text()
            if not prompt.strip():
                await websocket.send_text(END)
                continue
            try:
                started = False
                async for piece in state.chat_turn(chatbot, prompt, requester(websocket),
                                                   status=status if statuses else None):
                    if statuses and not started and chatbot.last_sources:
                        await websocket.send_text(json.dumps(
                            {"type": "sources", "sources": _sources(chatbot)}))
                    started = True
                    await websocket.send_text(piece)
                if statuses and not started and chatbot.last_sources:
                    await websocket.send_text(json.dumps(
                        {"type": "sources", "sources": _sources(chatbot)}))
            except ChinwagError as e:
                await websocket.send_text(f"[error: {e}]")
            await websocket.send_text(END)
    except WebSocketDisconnect:
        log.info("websocket for %s closed", persona)
