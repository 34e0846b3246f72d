"""The OpenAI-compatible API: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``.

The ``openai`` client works unchanged with ``base_url="http://HOST:PORT/v1"``. ``model`` names
the model itself (no persona) or a persona (its system prompt, examples and sampling apply).
With a persona, user messages may start with knowledge prefixes (``chinwag.knowledge``) and
the response carries a top-level ``sources`` list (in the first chunk of a stream: clients
that do not know it ignore it); ``on_source_error`` (``skip`` | ``fail``) may be sent.

The server may offer several models (``chinwag.llms``): ``model`` names one by id (a persona
runs on its own), it is loaded first if need be, and Ollama's ``keep_alive`` says how long it
stays loaded once idle. A chat completion carries ``chinwag: {"model", "chat_format"}``
(in the first chunk of a stream): the model that answered and the chat format that rendered
the prompt (``model-template``: the model's own).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from chinwag.chat.fitting import ReplyTrimmer
from chinwag.chat.turn import build_turn
from chinwag.errors import ChinwagError, InvalidParams
from chinwag.knowledge.embeddings import EMBEDDING_DESCRIPTION, MODEL_ID
from chinwag.knowledge.service import Gathered, gather_messages
from chinwag.server.auth import require_key
from chinwag.server.disconnect import unless_disconnected
from chinwag.server.errors import error_event
from chinwag.server.schemas import ChatCompletionRequest, CompletionRequest
from chinwag.server.state import State, requester
from chinwag.types import Done, Event, SamplingParams

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's (and llama-cpp-python's) default for /v1/completions


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def _usage(done: Done) -> dict[str, Any]:
    u = done.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def _finish(done: Done) -> str:
    return "length" if done.finish_reason == "length" else "stop"


async def _first_then_rest(request: Request, events: AsyncIterator[Event]
                           ) -> tuple[Event, AsyncIterator[Event]]:
    """Pull the first event before answering, so errors become a proper status code (and a
    client that leaves meanwhile leaves the queue)."""
    first = await unless_disconnected(request, events.__anext__())
    return first, events


async def _events_then_error(first: Event, rest: AsyncIterator[Event]
                             ) -> AsyncIterator[Event | dict[str, Any]]:
    """``first`` and the rest of a stream; a failure after the answer has started becomes its
    last item, the OpenAI error object (the status line has been sent already)."""
    event = first
    try:
        while True:
            yield event
            if isinstance(event, Done):
                return
            event = await rest.__anext__()
    except ChinwagError as e:
        yield error_event(e)
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


async def _collect(first: Event, rest: AsyncIterator[Event]) -> tuple[str, Done]:
    """The whole answer, then the stream closed (its model and place let go at once)."""
    parts: list[str] = []
    event = first
    try:
        while True:
            if isinstance(event, Done):
                return "".join(parts), event
            parts.append(event.text)
            event = await rest.__anext__()
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


async def _tidy(events: AsyncGenerator[Event, None]) -> AsyncIterator[Event]:
    """``tidy_reply`` for an async stream (strip the reply's surrounding whitespace)."""
    trimmer = ReplyTrimmer()
    async with aclosing(events):
        async for event in events:
            tidied = trimmer.tidy(event)
            if tidied is not None:
                yield tidied
            if isinstance(event, Done):
                return


@router.get("/models")
async def list_models(state: State) -> dict[str, Any]:
    """The models (the default first, each with its ``status``: loaded, loading, unloaded or
    failed; none is loaded by listing), every persona (each by its name as ``id``) and, when
    installed, the embedding model of ``/v1/embeddings``."""
    created = int(time.time())
    data = []
    for model in state.models.states():
        description = state.models.spec(model.id).description
        loaded = state.models.loaded_backend(model.id)
        if loaded is not None:
            info = loaded.info()
            description = (f"{info.extra.get('description', info.name)}, n_ctx {info.n_ctx}, "
                           f"chat format {info.chat_format}")
        data.append({"id": model.id, "object": "model", "created": created,
                     "owned_by": "chinwag", "status": model.status.value,
                     "description": description})
    data += [{"id": name, "object": "model", "created": created, "owned_by": "persona",
              "description": p.description} for name, p in sorted(state.personas.items())]
    if state.knowledge.embedder.available():  # the chinwag[embeddings] extra: /v1/embeddings
        data.append({"id": MODEL_ID, "object": "model", "created": created,
                     "owned_by": "chinwag", "description": EMBEDDING_DESCRIPTION})
    return {"object": "list", "data": data}


def _json_schema(body: ChatCompletionRequest | CompletionRequest) -> dict[str, Any] | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.json_schema is None:
        raise InvalidParams("response_format json_schema needs a 'json_schema' object",
                            param="response_format")
    return fmt.json_schema.schema_


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, state: State, request: Request
                           ) -> JSONResponse | StreamingResponse:
    """OpenAI chat completions, streaming or not (see the module docstring)."""
    persona, model_id = state.resolve(body.model)
    base = persona.sampling_params() if persona else SamplingParams()
    params = body.apply(base).with_(json_schema=_json_schema(body))
    keep_alive = body.keep_alive_seconds()
    asked = body.max_completion_tokens or body.max_tokens
    backend = state.handles[model_id]
    messages = [m.to_message() for m in body.messages]
    prepared: dict[str, Any] = {}

    async def events() -> AsyncGenerator[Event, None]:
        """The whole request on its model, held (loaded first if need be) from the knowledge
        and the prompt to the last token."""
        async with state.models.pinned(model_id, keep_alive):
            chat, gathered = messages, Gathered("")
            if persona is not None:  # a persona reads knowledge prefixes (chinwag.knowledge)
                chat, gathered = await run_in_threadpool(
                    gather_messages, state.knowledge, persona, chat, backend,
                    on_error=body.on_source_error)
            turn = await run_in_threadpool(  # counting tokens may be slow, or a remote call
                build_turn, backend, persona, chat, params, user=body.user,
                context=gathered.pieces, reserve=asked or 0, drop=body.truncation == "auto")
            prepared.update(turn=turn, gathered=gathered)
            async for event in state.generate(turn.prompt, turn.params,
                                              requester(request, body.user), persona,
                                              model=model_id):
                yield event

    first, rest = await _first_then_rest(request, _tidy(events()))
    turn, gathered = prepared["turn"], prepared["gathered"]
    rid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model or \
        model_id
    extra: dict[str, Any] = {"dropped_messages": turn.dropped} \
        if body.truncation == "auto" else {}
    sources: dict[str, Any] = {"sources": [report.as_dict() for report in gathered.reports]} \
        if gathered.reports else {}
    sources["chinwag"] = {"model": model_id, "chat_format": turn.prompt.format}
    if not body.stream:
        text, done = await unless_disconnected(request, _collect(first, rest))
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": _finish(done)}],
            "usage": _usage(done), **extra, **sources})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}], **extra}

    async def sse() -> AsyncIterator[str]:
        yield _sse({**chunk({"role": "assistant", "content": ""}), **sources})
        async for event in _events_then_error(first, rest):
            if isinstance(event, dict):
                yield _sse(event)
                return
            if not isinstance(event, Done):
                yield _sse(chunk({"content": event.text}))
                continue
            yield _sse(chunk({}, _finish(event)))
            if include_usage:
                yield _sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": _usage(event)})
            yield _sse("[DONE]")

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, state: State,
                      request: Request) -> JSONResponse | StreamingResponse:
    """OpenAI (legacy) completions: a raw continuation of ``prompt``; a persona as ``model``
    applies its sampling settings only."""
    persona, model_id = state.resolve(body.model)
    base = persona.sampling_params() if persona else SamplingParams(
        max_tokens=DEFAULT_COMPLETION_TOKENS)
    params = body.apply(base).with_(json_schema=_json_schema(body))
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
                raise InvalidParams("prompt must be a string or a list of exactly one string",
                                param="prompt")
        prompt = body.prompt[0]
    else:
        prompt = body.prompt
    first, rest = await _first_then_rest(request, state.generate(
        prompt, params, requester(request, body.user), persona, model=model_id,
        keep_alive=body.keep_alive_seconds()))
    rid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), body.model or \
        model_id
    if not body.stream:
        text, done = await unless_disconnected(request, _collect(first, rest))
        return JSONResponse({
            "id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None,
                         "finish_reason": _finish(done)}], "usage": _usage(done)})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
        return {"id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": None,
                             "finish_reason": finish}]}

    async def sse() -> AsyncIterator[str]:
        async for event in _events_then_error(first, rest):
            if isinstance(event, dict):
                yield _sse(event)
                return
            if not isinstance(event, Done):
                yield _sse(chunk(event.text))
                continue
            yield _sse(chunk("", _finish(event)))
            if include_usage:
                yield _sse({**chunk("", None), "choices": [], "usage": _usage(event)})
            yield _sse("[DONE]")

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
