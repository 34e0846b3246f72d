"""OpenAI's Batches API (``batch.jobs``): batches of requests from an uploaded file, run at a
lower priority than live requests (their lines take free places only), resumed after a
restart.

- ``POST /v1/batches``: ``{"input_file_id", "endpoint", "completion_window": "24h",
  "metadata"}``; the Batch object (``validating``), started at once.
- ``GET /v1/batches`` (``limit``, ``after``): a page of Batch objects, newest first.
- ``GET /v1/batches/{id}``; ``POST /v1/batches/{id}/cancel`` (the lines done so far are
  kept; 409 for a batch that has ended otherwise).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from chinwag.server.auth import require_key
from chinwag.server.files_api import page
from chinwag.server.state import State

router = APIRouter(prefix="/v1/batches", dependencies=[Depends(require_key)])


class BatchRequest(BaseModel):
    """``POST /v1/batches``, as OpenAI's clients send it."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16)


@router.post("")
async def create(body: BatchRequest, state: State) -> dict[str, Any]:
    """Create a batch and start it."""
    record = await run_in_threadpool(state.batches.create, body.input_file_id, body.endpoint,
                                     body.completion_window, body.metadata)
    state.batches.launch(record.id)
    return record.as_openai()


@router.get("")
def list_batches(state: State, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 after: str | None = None) -> dict[str, Any]:
    """A page of batches, newest first."""
    found, more = state.batches.page(after=after, limit=limit)
    return page([b.as_openai() for b in found], more)


@router.get("/{batch_id}")
def get_batch(batch_id: str, state: State) -> dict[str, Any]:
    """A Batch object (404 ``batch_not_found``)."""
    return state.batches.get(batch_id).as_openai()


@router.post("/{batch_id}/cancel")
async def cancel(batch_id: str, state: State) -> dict[str, Any]:
    """Cancel a batch: ``cancelling`` at once, ``cancelled`` once its lines in flight have
    stopped (before this answers)."""
    await run_in_threadpool(state.batches.request_cancel, batch_id)
    await state.batches.stop(batch_id)
    return (await run_in_threadpool(state.batches.get, batch_id)).as_openai()
