"""A user's stored conversations over HTTP: list, export, import, delete.

- ``GET /users/{user}/conversations`` (``?persona=``): the user's conversations, newest first.
- ``DELETE /users/{user}/conversations`` (``?persona=``): forget all of them.
- ``GET /conversations/{id}``: one conversation as JSON (the ``chinwag conversations export``
  format); ``DELETE /conversations/{id}``: forget it.
- ``POST /conversations``: add an exported conversation (under a new id if its id is taken).
- ``GET|POST|DELETE /users/{user}/facts/{persona}``: the user's pinned facts for a persona
  (always sent with the persona's system prompt); POST ``{"text": "..."}`` adds one, DELETE
  clears them.

The OpenAI endpoints stay stateless (OpenAI clients send the whole history); these serve the
persona endpoints' server-side memory. The routes are plain functions, so FastAPI runs them in
its thread pool: SQLite is never called on the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from chinwag.server.auth import require_key
from chinwag.server.state import State
from chinwag.store import Conversation

router = APIRouter(dependencies=[Depends(require_key)])


def _info(c: Conversation) -> dict[str, Any]:
    return {"id": c.id, "object": "conversation", "persona": c.persona, "user": c.user,
            "created_at": c.created_at, "updated_at": c.updated_at,
            "message_count": c.message_count, "summary": c.summary}


@router.get("/users/{user}/conversations")
def list_conversations(user: str, state: State,
                             persona: str | None = None) -> dict[str, Any]:
    """The user's conversations (with ``persona``: only those), newest first."""
    found = state.store.list_conversations(user=user, persona=persona)
    return {"object": "list", "data": [_info(c) for c in found]}


@router.delete("/users/{user}/conversations")
def delete_user_conversations(user: str, state: State,
                                    persona: str | None = None) -> dict[str, Any]:
    """Forget every conversation of the user (with ``persona``: only those)."""
    deleted = state.store.delete_user_conversations(user, persona)
    return {"object": "list", "user": user, "deleted": deleted}


@router.get("/conversations/{conversation}")
def export_conversation(conversation: str, state: State) -> dict[str, Any]:
    """The conversation as JSON: messages with roles, times, token counts, completeness."""
    return state.store.export_conversation(conversation)


@router.delete("/conversations/{conversation}")
def delete_conversation(conversation: str, state: State) -> dict[str, Any]:
    """Forget the conversation."""
    state.store.delete_conversation(conversation)
    return {"id": conversation, "object": "conversation", "deleted": True}


@router.post("/conversations", status_code=201)
def import_conversation(state: State,
                              document: Any = Body(...)) -> JSONResponse:  # noqa: B008
    """Add a conversation exported earlier; answers its entry (with its id)."""
    return JSONResponse(_info(state.store.import_conversation(document)), status_code=201)


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
