"""Knowledge sources over HTTP: list, read, write, delete, reload the sources folder.

- ``GET /sources``: every source, by name: ``{"object": "list", "data": [source, ...]}``.
- ``GET /sources/{name}``: one source (404 ``source_not_found``).
- ``PUT /sources/{name}``: add (201) or replace (200) a source from its fields as JSON
  (``name`` optional; when given, the path's); written to ``NAME.yaml`` in the sources folder.
  An invalid field is a 400 ``invalid_source`` naming it, and nothing is written.
- ``DELETE /sources/{name}``: remove the source and its file.
- ``POST /sources/reload``: read the folder again after files were edited by hand (a broken
  file: 400 ``invalid_source``, and the sources held before are kept).

A source reads ``{"object": "source", "name", "kind", "url"?, "collection"?, "describe",
"triggers", "max_items", "refresh" (seconds), "budget_tokens", "file"}``. The routes are plain
functions (FastAPI runs them in its thread pool): they read and write files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from chinwag.knowledge.sources import Source, source_from
from chinwag.server.auth import require_key
from chinwag.server.state import State

router = APIRouter(dependencies=[Depends(require_key)])


def _info(source: Source, path: Path) -> dict[str, Any]:
    return {"object": "source", "name": source.name, **source.definition(), "file": str(path)}


def _listing(state: State) -> dict[str, Any]:
    files = state.knowledge.sources.files()
    return {"object": "list", "data": [_info(s, p) for s, p in files.values()]}


@router.get("/sources")
def list_sources(state: State) -> dict[str, Any]:
    """Every source, sorted by name."""
    return _listing(state)


@router.post("/sources/reload")
def reload_sources(state: State) -> dict[str, Any]:
    """Read the sources folder again; answers the list as ``GET /sources``."""
    state.knowledge.sources.reload()
    return _listing(state)


@router.get("/sources/{name}")
def get_source(name: str, state: State) -> dict[str, Any]:
    """One source."""
    sources = state.knowledge.sources
    return _info(sources.get(name), sources.path_of(name))


@router.put("/sources/{name}")
def put_source(name: str, state: State,
               fields: Any = Body(...)) -> JSONResponse:  # noqa: B008
    """Add (201) or replace (200) the source ``name``; answers it."""
    source = source_from(fields, name=name, where=f"PUT /sources/{name}")
    sources = state.knowledge.sources
    created = sources.put(source)
    return JSONResponse(_info(source, sources.path_of(name)),
                        status_code=201 if created else 200)


@router.delete("/sources/{name}")
def delete_source(name: str, state: State) -> dict[str, Any]:
    """Remove the source and its file."""
    state.knowledge.sources.delete(name)
    return {"id": name, "object": "source", "deleted": True}
