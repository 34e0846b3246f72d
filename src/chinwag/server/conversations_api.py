"""A user's stored conversations over HTTP: list, export, import, delete.

- ``GET /users/{user}/conversations`` (``?persona=``): the user's conversations, newest first.
- ``DELETE /users/{user}/conversations`` (``?persona=``): forget all of them.
- ``GET /conversations/{id}``: one conversation as JSON (the ``chinwag conversations export``
  format; ``?format=markdown``: as Markdown, to download); ``DELETE /conversations/{id}``:
  forget it; ``PATCH /conversations/{id}`` ``{"title"}``: rename it (``""``: its first
  message is its title again).
- ``POST /conversations/{id}/truncate`` ``{"seq"}``: forget its messages from ``seq`` on
  (answering again and editing stream through ``chat_api``).
- ``POST /conversations``: add an exported conversation (under a new id if its id is taken).
- ``GET|POST|DELETE /users/{user}/facts/{persona}``: the user's pinned facts for a persona
  (always sent with the persona's system prompt); POST ``{"text": "..."}`` adds one, DELETE
  clears them.

The OpenAI endpoints stay stateless (OpenAI clients send the whole history); these serve the
persona endpoints' server-side memory. The routes are plain functions, so FastAPI runs them in
its thread pool: SQLite is never called on the event loop.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from chinwag.chat.markdown import conversation_markdown
from chinwag.server.auth import require_key
from chinwag.server.schemas import RenameRequest, TruncateRequest
from chinwag.server.state import State
from chinwag.store import Conversation

router = APIRouter(dependencies=[Depends(require_key)])


def info(c: Conversation) -> dict[str, Any]:
    """A conversation's entry in lists: ``title`` is what to show (the title given, else the
    first user message, shortened), ``named`` whether the user gave it."""
    return {"id": c.id, "object": "conversation", "persona": c.persona, "user": c.user,
            "title": c.heading, "named": bool(c.title), "created_at": c.created_at,
            "updated_at": c.updated_at, "message_count": c.message_count,
            "summary": c.summary}


@router.get("/users/{user}/conversations")
def list_conversations(user: str, state: State,
                             persona: str | None = None) -> dict[str, Any]:
    """The user's conversations (with ``persona``: only those), newest first."""
    found = state.store.list_conversations(user=user, persona=persona)
    return {"object": "list", "data": [info(c) for c in found]}


@router.delete("/users/{user}/conversations")
def delete_user_conversations(user: str, state: State,
                                    persona: str | None = None) -> dict[str, Any]:
    """Forget every conversation of the user (with ``persona``: only those)."""
    deleted = state.store.delete_user_conversations(user, persona)
    return {"object": "list", "user": user, "deleted": deleted}


@router.get("/conversations/{conversation}", response_model=None)
def export_conversation(conversation: str, state: State,
                        format: Literal["json", "markdown"] = "json"
                        ) -> dict[str, Any] | PlainTextResponse:
    """The conversation as JSON (messages with seq, role, text, times, token counts,
    completeness, the model and sources of each reply), or ``?format=markdown`` as a
    Markdown file to download."""
    document = state.store.export_conversation(conversation)
    if format == "json":
        return document
    persona = state.personas.get(document["persona"])
    text = conversation_markdown(document, character=persona.character if persona else None)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", document["heading"] or "conversation")[:60]
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name.strip("-") or "chat"}.md"'})


@router.patch("/conversations/{conversation}")
def rename_conversation(conversation: str, body: RenameRequest, state: State
                        ) -> dict[str, Any]:
    """Give the conversation a title (``""``: its first message stands in again)."""
    return info(state.store.rename_conversation(conversation, body.title.strip()))


@router.post("/conversations/{conversation}/truncate")
def truncate_conversation(conversation: str, body: TruncateRequest, state: State
                          ) -> dict[str, Any]:
    """Forget the messages from ``seq`` on (a summary that covered them goes too)."""
    deleted = state.store.delete_messages_from(conversation, body.seq)
    return {**info(state.store.get_conversation(conversation)), "deleted": deleted}


@router.delete("/conversations/{conversation}")
def delete_conversation(conversation: str, state: State) -> dict[str, Any]:
    """Forget the conversation."""
    state.store.delete_conversation(conversation)
    return {"id": conversation, "object": "conversation", "deleted": True}


@router.post("/conversations", status_code=201)
def import_conversation(state: State,
                              document: Any = Body(...)) -> JSONResponse:  # noqa: B008
    """Add a conversation exported earlier; answers its entry (with its id)."""
    return JSONResponse(info(state.store.import_conversation(document)), status_code=201)


class FactBody(BaseModel):
    """``POST /users/{user}/facts/{persona}``: one fact to pin."""

    text: str = Field(min_length=1, max_length=2000)


@router.get("/users/{user}/facts/{persona}")
def list_facts(user: str, persona: str, state: State) -> dict[str, Any]:
    """The user's pinned facts for the persona, oldest first."""
    state.persona(persona)
    return {"object": "list", "data": state.store.facts(persona, user)}


@router.post("/users/{user}/facts/{persona}", status_code=201)
def add_fact(user: str, persona: str, body: FactBody, state: State) -> dict[str, Any]:
    """Pin a fact: it is sent with every later turn of the user with the persona."""
    state.persona(persona)
    state.store.add_fact(persona, user, body.text.strip())
    return {"object": "list", "data": state.store.facts(persona, user)}


@router.delete("/users/{user}/facts/{persona}")
def clear_facts(user: str, persona: str, state: State) -> dict[str, Any]:
    """Unpin all of the user's facts for the persona."""
    return {"object": "list", "deleted": state.store.clear_facts(persona, user)}
