"""Fact collections and embeddings over HTTP.

- ``GET /collections``: every collection with its counts.
- ``POST /collections/{c}/documents``: add ``{"title", "text"}`` or ``{"url"}`` (fetched safely
  and its text extracted; ``"title"`` optional then), with ``"embed": true`` to store the
  chunks' vectors too (the collection's searches become hybrid). 201 with the document.
- ``GET /collections/{c}/documents``: its documents; ``DELETE /collections/{c}/documents/{id}``.
- ``GET /collections/{c}/search?q=...&k=4``: the best chunks, by BM25, or BM25 and the
  embedding model fused when the collection has vectors (``knowledge.collections``).
- ``POST /v1/embeddings``: OpenAI's embeddings endpoint (the ``openai`` client's
  ``embeddings.create``) on all-MiniLM-L6-v2 (``knowledge.embeddings``).

Every route is a plain function: FastAPI runs it in its thread pool, so SQLite, fetching and
the embedding model never run on the event loop.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from chinwag.errors import InvalidParams
from chinwag.knowledge.collections import DocumentInfo, Embeds, check_name
from chinwag.knowledge.embeddings import DIMENSIONS, MODEL_ID
from chinwag.knowledge.extract import extract
from chinwag.knowledge.fetch import fetch
from chinwag.server.auth import require_key
from chinwag.server.errors import APIError
from chinwag.server.state import ServerState, State

router = APIRouter(dependencies=[Depends(require_key)])

MAX_INPUTS = 2048
"""Texts in one ``/v1/embeddings`` request at most (OpenAI's limit)."""

MAX_K = 50
"""Hits one search may ask for at most."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DocumentBody(_Body):
    """``POST /collections/{c}/documents``: ``text`` with a ``title``, or a ``url``."""

    title: str | None = Field(default=None, max_length=500)
    text: str | None = None
    url: str | None = Field(default=None, max_length=2000)
    embed: bool = False


class EmbeddingRequest(_Body):
    """``POST /v1/embeddings``, as OpenAI's clients send it."""

    input: str | list[Any]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def _document(d: DocumentInfo) -> dict[str, Any]:
    return {"id": d.id, "object": "document", "collection": d.collection, "title": d.title,
            "url": d.url, "chunks": d.chunks, "embedded": d.embedded,
            "created_at": d.created_at}


def _embedder(state: ServerState) -> Embeds | None:
    """The embedding model when it is installed, for hybrid searches."""
    embedder = state.knowledge.embedder
    return embedder if embedder.available() else None


@router.get("/collections")
def list_collections(state: State) -> dict[str, Any]:
    """Every collection (one with at least one document) and its counts, by name."""
    return {"object": "list", "data": [
        {"id": c.name, "object": "collection", "documents": c.documents, "chunks": c.chunks,
         "embedded": c.embedded} for c in state.knowledge.collections.list_collections()]}


@router.post("/collections/{collection}/documents", status_code=201)
def add_document(collection: str, body: DocumentBody, state: State) -> JSONResponse:
    """Add a text, or the text of a page or feed fetched from a URL (a refused or failed
    fetch is a 422 with the ``FetchError``'s code)."""
    if (body.text is None) == (body.url is None):
        raise InvalidParams("send either 'text' (with a 'title') or 'url'", param="text")
    knowledge = state.knowledge
    check_name(collection)  # an invalid name fails before any fetch
    if body.text is not None:
        if not body.title:
            raise InvalidParams("a document sent as text needs a 'title'", param="title")
        title, text, url = body.title, body.text, None
    else:
        assert body.url is not None
        page = extract(fetch(body.url, knowledge.policy))
        title, text, url = body.title or page.title or page.url, page.text, page.url
    added = knowledge.collections.add(collection, title, text, url=url,
                                      embedder=knowledge.embedder if body.embed else None)
    return JSONResponse(_document(added), status_code=201)


@router.get("/collections/{collection}/documents")
def list_documents(collection: str, state: State) -> dict[str, Any]:
    """The collection's documents (without their text), oldest first."""
    return {"object": "list",
            "data": [_document(d) for d in state.knowledge.collections.documents(collection)]}


@router.delete("/collections/{collection}/documents/{document_id}")
def delete_document(collection: str, document_id: int, state: State) -> dict[str, Any]:
    """Delete a document and its chunks (404 when the collection has no such document)."""
    state.knowledge.collections.delete(collection, document_id)
    return {"id": document_id, "object": "document", "deleted": True}


@router.get("/collections/{collection}/search")
def search(collection: str, state: State, q: Annotated[str, Query(min_length=1)],
           k: Annotated[int, Query(ge=1, le=MAX_K)] = 4) -> dict[str, Any]:
    """The ``k`` chunks that best answer ``q``, best first (score: higher is better)."""
    hits = state.knowledge.collections.search(collection, q, k, embedder=_embedder(state))
    return {"object": "list", "data": [
        {"document_id": h.document_id, "chunk_id": h.chunk_id, "seq": h.seq, "title": h.title,
         "url": h.url, "text": h.text, "score": h.score} for h in hits]}


def _texts(given: str | list[Any]) -> list[str]:
    """The texts of an embeddings request's ``input``.

    Raises:
        InvalidParams: an empty list or string, more than ``MAX_INPUTS`` texts, token arrays.
    """
    texts = [given] if isinstance(given, str) else given
    if not texts:
        raise InvalidParams("'input' is an empty list: send at least one text", param="input")
    if len(texts) > MAX_INPUTS:
        raise InvalidParams(f"'input' has {len(texts)} texts; at most {MAX_INPUTS} per request",
                            param="input")
    for i, text in enumerate(texts):
        if isinstance(text, int | list):
            raise InvalidParams("token arrays are not supported as 'input': send the text "
                                f"(the model reads its own tokens, not {MODEL_ID}'s)",
                                param="input")
        if not isinstance(text, str):
            raise InvalidParams(f"input[{i}] must be a string", param="input")
        if not text:
            raise InvalidParams("'input' cannot be an empty string" if isinstance(given, str)
                                else f"input[{i}] is an empty string", param="input")
    return texts


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as a JSON list of numbers, or as base64 of its float32 little-endian bytes
    (what the ``openai`` client asks for by default and decodes with numpy)."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/v1/embeddings")
def embeddings(body: EmbeddingRequest, state: State) -> dict[str, Any]:
    """OpenAI's embeddings: one unit vector of 384 numbers per text, in input order.

    Usage counts the word pieces the model read (``Embedder.count_tokens``).
    """
    if body.model.lower() != MODEL_ID:
        raise APIError(400, f"unknown embedding model {body.model!r}; this server embeds with "
                            f"{MODEL_ID!r}", param="model", code="model_not_found")
    if body.dimensions is not None and body.dimensions != DIMENSIONS:
        raise InvalidParams(f"{MODEL_ID} makes vectors of {DIMENSIONS} dimensions; "
                            f"'dimensions' cannot be {body.dimensions}", param="dimensions")
    texts = _texts(body.input)
    embedder = state.knowledge.embedder
    vectors = embedder.embed(texts)
    tokens = embedder.count_tokens(texts)
    return {"object": "list", "model": MODEL_ID,
            "data": [{"object": "embedding", "index": i,
                      "embedding": _encoded(v, body.encoding_format)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
