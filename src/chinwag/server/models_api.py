"""The models a server offers (``chinwag.llms``): ``GET /models`` (what ``chinwag ps``
shows), ``POST /models/load`` and ``POST /models/unload`` with ``{"model": "id"}``
(llama-server's router shapes; unloading lets the requests running on the model finish
first). All three need the API key when one is set."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from chinwag.errors import InvalidParams
from chinwag.llms import ModelState, parse_keep_alive
from chinwag.server.auth import require_key
from chinwag.server.schemas import ModelRequest
from chinwag.server.state import State

router = APIRouter(prefix="/models", dependencies=[Depends(require_key)])


def _described(state: ModelState) -> dict[str, Any]:
    return {"id": state.id, "status": state.status.value, "size_bytes": state.size_bytes,
            "requests": state.requests, "loaded_at": state.loaded_at,
            "idle_since": state.idle_since, "expires_at": state.expires_at,
            "loads": state.loads, "error": state.error, "device": state.device}


@router.get("")
async def list_models(state: State) -> dict[str, Any]:
    """Every model with its status, memory (bytes; measured once loaded, else estimated),
    requests running, when it was loaded and has been idle since, when it will be unloaded
    for being idle (Unix times; null: never or not idle), and the error of a failed load;
    plus the limits (``models_max``, ``models_memory``)."""
    return {"object": "list", "default": state.models.default,
            "models_max": state.models.max_loaded, "models_memory": state.models.max_bytes,
            "data": [_described(m) for m in state.models.states()]}


@router.post("/load")
async def load(body: ModelRequest, state: State) -> dict[str, Any]:
    """Load ``model`` now (making room as a request would); ``{"success": true, "model":
    {...}}`` once it is loaded. A failed load is a 500 with the loader's message."""
    loaded = await state.models.load(body.model, parse_keep_alive(body.keep_alive))
    return {"success": True, "model": _described(loaded)}


@router.post("/unload")
async def unload(body: ModelRequest, state: State) -> dict[str, Any]:
    """Unload ``model`` once the requests running on it have finished; 400 if it is not
    loaded."""
    if not await state.models.unload(body.model):
        raise InvalidParams(f"model {state.models.spec(body.model).id} is not loaded",
                            param="model")
    return {"success": True, "model": _described(state.models.state(body.model))}
