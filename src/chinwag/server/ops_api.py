"""Operations: ``/health`` (always open) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from chinwag.server.auth import require_key
from chinwag.server.state import State

router = APIRouter()


@router.get("/health")
async def health(state: State) -> dict[str, Any]:
    """``{"status": "ok", ...}`` once the model is loaded."""
    return {"status": "ok", "model": state.model_id, "personas": sorted(state.personas),
            "queue": state.queue.waiting}


@router.get("/metrics", dependencies=[Depends(require_key)])
async def metrics(state: State) -> Response:
    """Requests, tokens, time to first token, tokens/s and queue depth, for Prometheus."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
