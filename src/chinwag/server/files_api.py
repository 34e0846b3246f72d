"""OpenAI's Files API, for batch inputs and results (``batch.files``).

- ``POST /v1/files``: multipart ``file`` and ``purpose`` (``batch``); the File object. An
  upload over ``max_file_bytes`` is a 413 and nothing is kept.
- ``GET /v1/files`` (``purpose``, ``limit``, ``after``, ``order``): a page of File objects,
  newest first by default.
- ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content`` (the bytes),
  ``DELETE /v1/files/{id}``.

The routes are plain functions: FastAPI runs them in its thread pool, so the disk and
SQLite never block the event loop. ``BodyLimit`` lets ``POST /v1/files`` bodies reach
``max_file_bytes`` (the others keep ``max_body_bytes``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, UploadFile
from fastapi.responses import FileResponse

from chinwag.server.auth import require_key
from chinwag.server.state import State

router = APIRouter(prefix="/v1/files", dependencies=[Depends(require_key)])

PATH = "/v1/files"


@router.post("")
def upload(file: UploadFile, purpose: Annotated[str, Form()], state: State) -> dict[str, Any]:
    """Store an uploaded file; its File object."""
    return state.files.add(file.filename or "", purpose, file.file).as_openai()


@router.get("")
def list_files(state: State, purpose: str | None = None,
               limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
               after: str | None = None,
               order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    """A page of files: ``{"object": "list", "data", "first_id", "last_id", "has_more"}``."""
    found, more = state.files.page(purpose=purpose, after=after, limit=limit,
                                   newest_first=order == "desc")
    return page([f.as_openai() for f in found], more)


@router.get("/{file_id}")
def get_file(file_id: str, state: State) -> dict[str, Any]:
    """A File object (404 ``file_not_found``)."""
    return state.files.get(file_id).as_openai()


@router.get("/{file_id}/content", response_model=None)
def content(file_id: str, state: State) -> FileResponse:
    """The file's bytes."""
    record = state.files.get(file_id)
    return FileResponse(state.files.path(file_id), media_type="application/octet-stream",
                        filename=record.filename)


@router.delete("/{file_id}")
def delete(file_id: str, state: State) -> dict[str, Any]:
    """Delete a file: ``{"id", "object": "file", "deleted": true}``."""
    state.files.delete(file_id)
    return {"id": file_id, "object": "file", "deleted": True}


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page: ``{"object": "list", "data", "first_id", "last_id",
    "has_more"}`` (the next page is asked for with ``after=last_id``)."""
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}
