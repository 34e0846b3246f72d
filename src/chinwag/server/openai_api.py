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

Log-probabilities asked for (chat: ``logprobs``, ``top_logprobs``; completions: ``logprobs``)
come back in each choice's ``logprobs`` in OpenAI's shapes, each chunk of a stream carrying
its own tokens'; ``null`` when not asked.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

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
from chinwag.tools import Reply, ReplyCollector
from chinwag.types import (
    ChatEvent,
    Done,
    Event,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
    ToolArguments,
    ToolCallStart,
    ToolDecision,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

E = TypeVar("E", Event, ChatEvent)

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's (and llama-cpp-python's) default for /v1/completions


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def _usage(done: Done) -> dict[str, Any]:
    u = done.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


def _finish(done: Done) -> str:
    """OpenAI's ``finish_reason``: ``length``, ``tool_calls`` or ``stop``."""
    return done.finish_reason if done.finish_reason in ("length", "tool_calls") else "stop"


def _chat_logprobs(records: Sequence[TokenLogprob], asked: bool) -> dict[str, Any] | None:
    """A chat choice's ``logprobs`` in OpenAI's shape, ``{"content": [{"token", "logprob",
    "bytes", "top_logprobs": [...]}], "refusal": null}``; None (JSON null) when not asked."""
    return {"content": [r.as_openai() for r in records], "refusal": None} if asked else None


class _CompletionLogprobs:
    """A completion's ``logprobs`` in OpenAI's legacy shape: ``{"tokens", "token_logprobs",
    "top_logprobs": [{token: logprob}], "text_offset"}``, the offsets counted in characters
    from the start of the completion across a stream's chunks (as vLLM counts them)."""

    def __init__(self, asked: bool) -> None:
        self.asked = asked
        self._offset = 0

    def __call__(self, records: Sequence[TokenLogprob]) -> dict[str, Any] | None:
        """The ``logprobs`` of ``records`` (the next tokens); None when not asked."""
        if not self.asked:
            return None
        offsets = []
        for r in records:
            offsets.append(self._offset)
            self._offset += len(r.token)
        return {"tokens": [r.token for r in records],
                "token_logprobs": [r.logprob for r in records],
                "top_logprobs": [{t.token: t.logprob for t in r.top} for r in records],
                "text_offset": offsets}


def _noting_logprobs(events: AsyncIterator[E], into: list[TokenLogprob],
                     wanted: bool) -> AsyncIterator[E]:
    """``events`` as they come, the log-probability records of their token events added to
    ``into`` on the way (for an answer that is not streamed); ``events`` itself, with no
    extra step per event, when no log-probabilities were asked for."""
    return _noting(events, into) if wanted else events


async def _noting(events: AsyncIterator[E], into: list[TokenLogprob]) -> AsyncIterator[E]:
    try:
        async for event in events:
            if isinstance(event, TokenEvent):
                into += event.logprobs
            yield event
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def _first_then_rest(request: Request, events: AsyncIterator[E]
                           ) -> tuple[E, AsyncIterator[E]]:
    """Pull the first event before answering, so errors become a proper status code (and a
    client that leaves meanwhile leaves the queue)."""
    first = await unless_disconnected(request, events.__anext__())
    return first, events


async def _events_then_error(first: E, rest: AsyncIterator[E]
                             ) -> AsyncIterator[E | dict[str, Any]]:
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


async def _collect_answer(first: ChatEvent, rest: AsyncIterator[ChatEvent]) -> Reply:
    """The whole answer to a chat (text or a tool call), then the stream closed."""
    collector = ReplyCollector()
    event = first
    try:
        while (reply := collector.add(event)) is None:
            event = await rest.__anext__()
        return reply
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


async def _tidy(events: AsyncGenerator[ChatEvent, None]) -> AsyncIterator[ChatEvent]:
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
    """OpenAI chat completions, streaming or not (see the module docstring); with ``tools``,
    the answer is text or one call (``LanguageBackend.generate_tools``)."""
    persona, model_id = state.resolve(body.model)
    base = persona.sampling_params() if persona else SamplingParams()
    params = body.apply(base).with_(json_schema=_json_schema(body))
    tools = body.tool_request()
    keep_alive = body.keep_alive_seconds()
    asked = body.max_completion_tokens or body.max_tokens
    backend = state.handles[model_id]
    messages = [m.to_message() for m in body.messages]
    prepared: dict[str, Any] = {}

    async def events() -> AsyncGenerator[ChatEvent, None]:
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
                context=gathered.pieces, reserve=asked or 0, drop=body.truncation == "auto",
                tools=tools)
            prepared.update(turn=turn, gathered=gathered)
            async for event in state.generate(turn.prompt, turn.params,
                                              requester(request, body.user), persona,
                                              model=model_id, tools=tools):
                yield event

    noted: list[TokenLogprob] = []  # the answer's log-probabilities, when not streamed
    first, rest = await _first_then_rest(request, _noting_logprobs(
        _tidy(events()), noted, params.logprobs is not None and not body.stream))
    turn, gathered = prepared["turn"], prepared["gathered"]
    rid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model or \
        model_id
    extra: dict[str, Any] = {"dropped_messages": turn.dropped} \
        if body.truncation == "auto" else {}
    sources: dict[str, Any] = {"sources": [report.as_dict() for report in gathered.reports]} \
        if gathered.reports else {}
    sources["chinwag"] = {"model": model_id, "chat_format": turn.prompt.format}
    if isinstance(first, ToolDecision):  # auto: the decision comes first, and goes first
        sources["chinwag"]["tool_decision"] = {"choice": first.choice, "scores": {
            k: v if math.isfinite(v) else None for k, v in first.scores.items()}}
        first = await unless_disconnected(request, rest.__anext__())
    if not body.stream:
        answer = await unless_disconnected(request, _collect_answer(first, rest))
        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        if answer.call is not None:
            message.update(content=answer.text or None, tool_calls=[answer.call.as_openai()])
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message,
                         "logprobs": _chat_logprobs(noted, params.logprobs is not None),
                         "finish_reason": _finish(answer.done)}],
            "usage": _usage(answer.done), **extra, **sources})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    calling = isinstance(first, ToolCallStart)

    def chunk(delta: dict[str, Any], finish: str | None = None,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                             "finish_reason": finish}], **extra}

    async def sse() -> AsyncIterator[str]:
        yield _sse({**chunk({"role": "assistant", "content": None if calling else ""}),
                    **sources})
        async for event in _events_then_error(first, rest):
            if isinstance(event, dict):
                yield _sse(event)
                return
            if isinstance(event, TokenEvent):
                yield _sse(chunk({"content": event.text}, logprobs=_chat_logprobs(
                    event.logprobs, params.logprobs is not None)))
            elif isinstance(event, ToolCallStart):
                yield _sse(chunk({"tool_calls": [{"index": 0, "id": event.id,
                                                  "type": "function", "function": {
                                                      "name": event.name, "arguments": ""}}]}))
            elif isinstance(event, ToolArguments):
                yield _sse(chunk({"tool_calls": [{"index": 0, "function": {
                    "arguments": event.text}}]}))
            elif isinstance(event, Done):
                yield _sse(chunk({}, _finish(event)))
                if include_usage:
                    yield _sse({"id": rid, "object": "chat.completion.chunk",
                                "created": created, "model": model, "choices": [],
                                "usage": _usage(event)})
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
    noted: list[TokenLogprob] = []  # the answer's log-probabilities, when not streamed
    first, rest = await _first_then_rest(request, _noting_logprobs(state.generate(
        prompt, params, requester(request, body.user), persona, model=model_id,
        keep_alive=body.keep_alive_seconds()), noted,
        params.logprobs is not None and not body.stream))
    rid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), body.model or \
        model_id
    logprobs = _CompletionLogprobs(params.logprobs is not None)
    if not body.stream:
        text, done = await unless_disconnected(request, _collect(first, rest))
        return JSONResponse({
            "id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs(noted),
                         "finish_reason": _finish(done)}], "usage": _usage(done)})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(text: str, finish: str | None = None,
              records: Sequence[TokenLogprob] = ()) -> dict[str, Any]:
        return {"id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": logprobs(records),
                             "finish_reason": finish}]}

    async def sse() -> AsyncIterator[str]:
        async for event in _events_then_error(first, rest):
            if isinstance(event, dict):
                yield _sse(event)
                return
            if not isinstance(event, Done):
                yield _sse(chunk(event.text, records=event.logprobs))
                continue
            yield _sse(chunk("", _finish(event)))
            if include_usage:
                yield _sse({**chunk("", None), "choices": [], "usage": _usage(event)})
            yield _sse("[DONE]")

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
