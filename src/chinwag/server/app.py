"""``create_app(settings)``: the chatbot service as a FastAPI app (no module-level state).

Routes: the OpenAI-compatible API (``openai_api``), the persona endpoints (``persona_api``),
text-generation-webui's legacy API (``textgen_api``), ``/health`` and ``/metrics``
(``ops_api``), the models loaded on demand (``models_api``), stored conversations
(``conversations_api``) and the chat page's turns in them (``chat_api``), knowledge sources
(``sources_api``), fact collections and ``/v1/embeddings`` (``knowledge_api``), OpenAI's
Files and Batches APIs (``files_api``, ``batches_api``), the Slack, Discord and Teams hooks
whose secrets are set (``hooks``), and the web page at ``/`` (``static/``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chinwag.backends.base import LanguageBackend
from chinwag.server import (
    batches_api,
    chat_api,
    conversations_api,
    files_api,
    hooks,
    knowledge_api,
    models_api,
    npc_api,
    openai_api,
    ops_api,
    persona_api,
    sources_api,
    textgen_api,
)
from chinwag.server.errors import error_body, install_error_handlers
from chinwag.server.state import ServerState
from chinwag.settings import Settings

STATIC = Path(__file__).parent / "static"


UPLOAD_OVERHEAD = 1 << 16
"""Bytes of multipart framing allowed on top of ``max_file_bytes`` in an upload's body."""


class BodyLimit:
    """Answer 413 (OpenAI-shaped) to request bodies over ``limit`` bytes (``upload_limit`` for
    ``POST /v1/files``), whether announced by ``Content-Length`` or streamed in chunks."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int | None = None) -> None:
        self.app, self.limit = app, limit
        self.upload_limit = upload_limit if upload_limit is not None else limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if (scope["method"] == "POST"
                                      and scope["path"] == files_api.PATH) else self.limit
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._refuse(send, limit)
            return
        messages: list[Message] = []
        size = 0
        while True:  # buffer the body (bounded), then replay it to the app
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(send, limit)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(error_body(f"the request body is larger than {limit} bytes",
                                     "invalid_request_error", None, "payload_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class CountRequests:
    """Count requests by route template and status in the app's metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("other" if status["code"] == 404
                                                    else scope["path"])
            state: ServerState | None = getattr(scope["app"].state, "chinwag", None)
            if state is not None:
                state.metrics.requests.labels(path, str(status["code"])).inc()


def create_app(settings: Settings, backend: LanguageBackend | None = None, *,
               close_backend: bool | None = None, run_batches: bool = True) -> FastAPI:
    """The chinwag service for ``settings``.

    Args:
        settings: server and model settings.
        backend: a backend to serve (tests pass one); default: loaded from the settings when
            the app starts, and closed when it stops.
        close_backend: close the backend when the app stops; default: only one it loaded.
            A backend the app may close is also one it may unload to make room for another
            model (and load again from the settings); one it may not close stays loaded.
            ``chinwag serve`` passes True: uvicorn ends the process with the signal that
            stopped it, so code after ``uvicorn.run`` may never run, and closing the backend
            is what saves the KV cache to disk.
        run_batches: run the server batches stored in the database (``/v1/batches``), the
            unfinished ones resumed at start; ``chinwag batch run`` passes False (its app
            runs the CLI's file only).

    Raises (at start-up):
        ModelNotFound, ModelLoadError, PersonaError, StoreError, ...: what loading the model,
            the personas and the conversation database raises.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from chinwag.backends import load_backend

        closing = close_backend if close_backend is not None else backend is None
        state = ServerState.build(settings, backend or load_backend(settings),
                                  resident=not closing)
        app.state.chinwag = state
        try:
            app.state.hooks = hooks.start(state)
        except BaseException:
            await state.close(close_backend=closing)
            raise
        await state.start(app if run_batches else None)
        try:
            yield
        finally:
            await state.close(close_backend=closing)
            await app.state.hooks.close()

    app = FastAPI(title="chinwag", summary="LLM chatbots: personas on a local model",
                  lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(ops_api.router)
    app.include_router(openai_api.router)
    app.include_router(persona_api.router)
    app.include_router(textgen_api.router)
    app.include_router(conversations_api.router)
    app.include_router(knowledge_api.router)
    app.include_router(sources_api.router)
    app.include_router(npc_api.router)
    app.include_router(models_api.router)
    app.include_router(chat_api.router)
    app.include_router(files_api.router)
    app.include_router(batches_api.router)
    for router in hooks.routers(settings):
        app.include_router(router)
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False, response_model=None)
    async def page() -> Response:
        index = STATIC / "index.html"
        if index.exists():
            return FileResponse(index, media_type="text/html")
        return PlainTextResponse("chinwag is running; the web page is not installed.")

    app.add_middleware(CountRequests)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes,
                       upload_limit=int(settings.max_file_bytes) + UPLOAD_OVERHEAD)
    return app
