"""Operations: ``/health`` (always open), ``/metrics`` (Prometheus text) and ``/tokenize``
(llama.cpp's and vLLM's shape, so that another chinwag or a client can count tokens)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from chinwag.errors import InvalidParams
from chinwag.server.auth import require_key
from chinwag.server.schemas import TokenizeRequest
from chinwag.server.state import State

router = APIRouter()


@router.get("/health")
async def health(state: State) -> dict[str, Any]:
    """``{"status": "ok", ...}`` once the default model is loaded; ``models`` gives each
    model's status."""
    return {"status": "ok", "model": state.model_id, "personas": sorted(state.personas),
            "queue": sum(q.waiting for q in state.queues.values()),
            "models": {m.id: m.status.value for m in state.models.states()}}


@router.get("/metrics", dependencies=[Depends(require_key)])
async def metrics(state: State) -> Response:
    """Requests, tokens, time to first token, tokens/s and queue depth, for Prometheus."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.post("/tokenize", dependencies=[Depends(require_key)])
async def tokenize(body: TokenizeRequest, state: State) -> dict[str, Any]:
    """``{"tokens": [ids...], "count": n}`` for ``content`` (llama.cpp) or ``prompt`` (vLLM),
    as a whole prompt (BOS included when the model adds one). ``tokens`` is left out when the
    backend cannot list ids; ``approximate`` is true when its count is an estimate."""
    text = body.content if body.content is not None else body.prompt
    if text is None:
        raise InvalidParams("tokenize needs 'content' (or 'prompt')", param="content")
    _persona, model = state.resolve(body.model)
    async with state.models.pinned(model) as backend:
        ids = getattr(backend, "tokenize", None)
        if ids is not None:
            tokens: list[int] = await asyncio.to_thread(ids, text)
            return {"tokens": tokens, "count": len(tokens)}
        count = await asyncio.to_thread(backend.count_tokens, text)
        return {"count": count, "approximate": not backend.capabilities.exact_token_count}
