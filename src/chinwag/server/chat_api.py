"""The chat page's conversations, for any client that keeps its chats on the server:

- ``GET /personas``: each persona with what a chat page shows (character, greeting, memory
  policy, the model it runs on, its sampling defaults).
- ``POST /chat/{persona}`` ``{"user", "conversation"?, "text", "model"?, "params"?}``: a
  message in the user's stored conversation (``conversation`` null: a new one);
- ``POST /conversations/{id}/regenerate`` ``{"model"?, "params"?}``: the last answer dropped
  and the last user message answered again;
- ``POST /conversations/{id}/edit`` ``{"seq", "text", "model"?, "params"?}``: the user
  message ``seq`` and what followed it dropped, then ``text`` answered.

Each answers with server-sent events, an ``event:`` line naming each and a ``data:`` line
of JSON::

    event: conversation  data: {"conversation": id, "title", "persona", "model"}   (first)
    event: queued        data: {"ahead": 2}          (while waiting behind other requests)
    event: status        data: {"text": "Reading https://..."}      (knowledge being read)
    event: sources       data: {"sources": [...]}             (what the answer draws on)
    event: token         data: {"text": "..."}                          (the answer)
    event: done          data: {"conversation", "finish_reason", "usage", "model",
                                "question_seq", "reply_seq"}                  (last)
    event: error         data: {"error": {...}}                                (last)

Bad input (an unknown persona or model, another user's conversation, a ``seq`` that is not
a user message) is answered before the stream, with its status. A client that goes away
stops the answer; what was written so far stays, marked incomplete (as Stop in the page).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from chinwag.chat.chatbot import Chatbot
from chinwag.chat.persona import Persona
from chinwag.errors import ChinwagError, InvalidParams
from chinwag.server.auth import require_key
from chinwag.server.errors import error_event
from chinwag.server.schemas import EditRequest, PageChatRequest, PageParams, RegenerateRequest
from chinwag.server.state import ServerState, State, requester

router = APIRouter(dependencies=[Depends(require_key)])


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _memory_text(persona: Persona) -> str:
    memory = persona.memory
    if memory.policy == "summary":
        return f"the last {memory.window} messages and a summary of older ones"
    if memory.policy == "token_budget":
        return "as many recent messages as fit in the context window"
    return f"the last {memory.window} messages"


@router.get("/personas")
async def personas(state: State) -> dict[str, Any]:
    """Every persona, for a chat page: ``name``, ``character`` (the name its replies go
    under), ``description``, ``greeting``, ``memory`` (``policy``, ``window``, ``text``),
    ``model`` (the model it runs on unless a request names another), ``sampling`` (its
    defaults)."""
    data = []
    for name, p in sorted(state.personas.items()):
        params = p.sampling_params()
        data.append({
            "name": name, "object": "persona", "character": p.character or name,
            "description": p.description, "greeting": p.greeting,
            "memory": {"policy": p.memory.policy, "window": p.memory.window,
                       "text": _memory_text(p)},
            "model": state.model_of(p), "own_model": bool(p.llm),
            "sampling": {"temperature": params.temperature, "top_p": params.top_p,
                         "top_k": params.top_k, "max_tokens": params.max_tokens,
                         "repeat_penalty": params.repeat_penalty}})
    return {"object": "list", "data": data}


def _prepare(chatbot: Chatbot, params: PageParams | None) -> Chatbot:
    if params is not None:
        chatbot.set(**params.changes())
    return chatbot


def _turn_stream(state: ServerState, chatbot: Chatbot, text: str, who: str,
                 replace_from: int | None = None) -> StreamingResponse:
    """The answer to ``text`` as server-sent events (see the module docstring)."""
    events: asyncio.Queue[str | None] = asyncio.Queue()
    model = state.model_of_chatbot(chatbot)

    async def status(line: str) -> None:
        events.put_nowait(_event("status", {"text": line}))

    async def queued(ahead: int) -> None:
        events.put_nowait(_event("queued", {"ahead": ahead}))

    def sources() -> None:
        if chatbot.last_sources:
            events.put_nowait(_event("sources", {"sources": [
                report.as_dict() for report in chatbot.last_sources]}))

    async def run() -> None:
        try:
            started = False
            async for piece in state.chat_turn(chatbot, text, who, status=status,
                                               queued=queued, replace_from=replace_from):
                if not started:
                    started = True
                    sources()
                events.put_nowait(_event("token", {"text": piece}))
            if not started:
                sources()
            done = chatbot.last
            usage = done.usage if done is not None else None
            events.put_nowait(_event("done", {
                "conversation": chatbot.conversation_id, "model": model,
                "finish_reason": done.finish_reason if done is not None else "stop",
                "usage": {"prompt_tokens": usage.prompt_tokens,
                          "completion_tokens": usage.completion_tokens,
                          "cached_tokens": usage.cached_tokens} if usage else None,
                "question_seq": chatbot.log[-2].seq if len(chatbot.log) > 1 else None,
                "reply_seq": chatbot.log[-1].seq if chatbot.log else None}))
        except ChinwagError as e:
            events.put_nowait(_event("error", error_event(e)))
        finally:
            events.put_nowait(None)

    async def sse() -> AsyncIterator[str]:
        conversation = chatbot.conversation
        yield _event("conversation", {
            "conversation": chatbot.conversation_id, "persona": chatbot.persona.name,
            "model": model, "title": conversation.heading if conversation else ""})
        task = asyncio.get_running_loop().create_task(run())
        try:
            while (item := await events.get()) is not None:
                yield item
        finally:  # the client went away (Stop): the answer stops, what was said stays
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(task, return_exceptions=True)

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache",
                                      **({"X-Conversation-Id": chatbot.conversation_id}
                                         if chatbot.conversation_id else {})})


@router.post("/chat/{persona}", response_model=None)
async def chat(persona: str, body: PageChatRequest, state: State,
               request: Request) -> StreamingResponse:
    """A message in the user's conversation with ``persona`` (see the module docstring)."""
    found = state.persona(persona)
    state.model_of(found, body.model)  # an unknown model is a 404 before anything starts
    chatbot = await run_in_threadpool(
        lambda: state.chatbot(found, body.user, body.conversation, model=body.model,
                              new=body.conversation is None))
    return _turn_stream(state, _prepare(chatbot, body.params), body.text,
                        requester(request, body.user))


async def _stored(state: ServerState, conversation: str, user: str | None,
                  model: str | None, params: PageParams | None) -> Chatbot:
    """The chatbot of a stored conversation, for a regenerate or an edit."""
    found = await run_in_threadpool(state.store.get_conversation, conversation)
    persona = state.persona(found.persona)
    state.model_of(persona, model)
    chatbot = await run_in_threadpool(
        lambda: state.chatbot(persona, user, conversation, model=model))
    return _prepare(chatbot, params)


@router.post("/conversations/{conversation}/regenerate", response_model=None)
async def regenerate(conversation: str, body: RegenerateRequest, state: State,
                     request: Request) -> StreamingResponse:
    """Drop the last answer and answer the last user message again."""
    chatbot = await _stored(state, conversation, body.user, body.model, body.params)
    asked = next((m for m in reversed(chatbot.log) if m.role == "user"), None)
    if asked is None:
        raise InvalidParams("the conversation has no user message to answer again",
                            param="conversation")
    return _turn_stream(state, chatbot, asked.content, requester(request, chatbot.user),
                        replace_from=asked.seq)


@router.post("/conversations/{conversation}/edit", response_model=None)
async def edit(conversation: str, body: EditRequest, state: State,
               request: Request) -> StreamingResponse:
    """Replace the user message ``seq`` with ``text`` (what followed it is dropped) and
    answer it."""
    chatbot = await _stored(state, conversation, body.user, body.model, body.params)
    target = next((m for m in chatbot.log if m.seq == body.seq), None)
    if target is None or target.role != "user":
        raise InvalidParams(f"message {body.seq} of conversation {conversation} is not a "
                            "user message", param="seq")
    return _turn_stream(state, chatbot, body.text, requester(request, chatbot.user),
                        replace_from=body.seq)
