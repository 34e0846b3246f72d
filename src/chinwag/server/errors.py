"""Every error the server answers, in OpenAI's shape, mapped from chinwag's error tree here
and only here: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chinwag.errors import (
    BackendError,
    BadExport,
    BadSignature,
    BatchFinished,
    BatchNotFound,
    Cancelled,
    ChinwagError,
    ConfigError,
    ContextOverflow,
    ConversationNotFound,
    DocumentNotFound,
    EmbeddingsUnavailable,
    FetchError,
    FileNotFound,
    FileTooLarge,
    FormatError,
    InvalidParams,
    ModelError,
    ModelLoadFailed,
    NPCBusy,
    OutputInvalid,
    Overloaded,
    PlatformError,
    RemoteError,
    SchemaError,
    SourceError,
    StoreError,
    UnknownModel,
    UnknownPersona,
    UnknownSource,
    UpstreamIgnoredTools,
)

log = logging.getLogger("chinwag.server")


class APIError(Exception):
    """An error with an HTTP status, raised by routes for what is not a ``ChinwagError``
    (a missing parameter, an unknown model id, a wrong API key, a body too large)."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers


def error_body(message: str, type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def from_chinwag(e: ChinwagError) -> APIError:
    """The status and body for one of chinwag's errors."""
    if isinstance(e, UnknownPersona | UnknownModel):
        return APIError(404, str(e), param="model", code="model_not_found")
    if isinstance(e, ContextOverflow):
        return APIError(400, f"This model's maximum context length is {e.n_ctx} tokens. {e}.",
                        param="messages", code="context_length_exceeded")
    if isinstance(e, InvalidParams):
        return APIError(400, str(e), param=e.param, code=e.code)
    if isinstance(e, SchemaError):
        return APIError(400, str(e), param="response_format", code="invalid_schema")
    if isinstance(e, FormatError):
        return APIError(400, str(e), param="messages", code="invalid_messages")
    if isinstance(e, ConversationNotFound):
        return APIError(404, str(e), param="conversation", code="conversation_not_found")
    if isinstance(e, UnknownSource):
        return APIError(404, str(e), param="source", code="source_not_found")
    if isinstance(e, DocumentNotFound):
        return APIError(404, str(e), param="document", code="document_not_found")
    if isinstance(e, FileNotFound):
        return APIError(404, str(e), param="file_id", code="file_not_found")
    if isinstance(e, BatchNotFound):
        return APIError(404, str(e), param="batch_id", code="batch_not_found")
    if isinstance(e, FileTooLarge):
        return APIError(413, str(e), param="file", code="file_too_large")
    if isinstance(e, BatchFinished):
        return APIError(409, str(e), param="batch_id", code="batch_finished")
    if isinstance(e, SourceError):
        return APIError(400, str(e), param="source", code="invalid_source")
    if isinstance(e, BadExport):
        return APIError(400, str(e), param="document", code="invalid_export")
    if isinstance(e, FetchError):  # a source the caller named could not be used: its code says why
        return APIError(422, str(e), param="url", code=e.code)
    if isinstance(e, PlatformError):
        return APIError(502, str(e), type="server_error", code="platform_error")
    if isinstance(e, BadSignature):
        return APIError(401, str(e), code="invalid_signature")
    if isinstance(e, NPCBusy):
        return APIError(409, str(e), param="player", code="npc_busy")
    if isinstance(e, Cancelled):  # stopped by another request (POST /npc/{persona}/cancel)
        return APIError(409, str(e), code="cancelled")
    if isinstance(e, StoreError):
        return APIError(500, str(e), type="server_error", code="store_error")
    if isinstance(e, Overloaded):
        return APIError(503, str(e), type="server_error", code="overloaded",
                        headers={"Retry-After": str(e.retry_after)})
    if isinstance(e, EmbeddingsUnavailable):  # this installation lacks the extra
        return APIError(501, str(e), type="server_error", code="embeddings_unavailable")
    if isinstance(e, UpstreamIgnoredTools):
        return APIError(502, str(e), type="server_error", param="tool_choice",
                        code="upstream_ignored_tools")
    if isinstance(e, RemoteError):  # the model behind chinwag is another server: a gateway
        return APIError(502, f"the upstream LLM server failed: {e}", type="server_error",
                        code="upstream_error")
    if isinstance(e, OutputInvalid):
        return APIError(500, str(e), type="server_error", param="response_format",
                        code="invalid_output")
    if isinstance(e, ModelLoadFailed):
        return APIError(500, str(e), type="server_error", param="model",
                        code="model_load_failed")
    if isinstance(e, ModelError | BackendError | ConfigError):
        return APIError(500, str(e), type="server_error", code="model_error")
    return APIError(500, str(e), type="server_error")


def error_event(e: ChinwagError) -> dict[str, Any]:
    """The OpenAI error object for a failure in the middle of a streamed answer (sent as an
    SSE ``data:`` line; the ``openai`` client raises ``APIError`` with it)."""
    mapped = from_chinwag(e)
    log.log(logging.ERROR if mapped.status >= 500 else logging.INFO,
            "stream ended by an error: %d %s", mapped.status, e)
    return error_body(mapped.message, mapped.type, mapped.param, mapped.code)


def response_for(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status,
                        headers=e.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the OpenAI shape; malformed input is a 400, never a 500."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        log.info("%s %s -> %d %s", request.method, request.url.path, e.status, e.message)
        return response_for(e)

    @app.exception_handler(ChinwagError)
    async def chinwag_error(request: Request, e: ChinwagError) -> JSONResponse:
        mapped = from_chinwag(e)
        log.log(logging.ERROR if mapped.status >= 500 else logging.INFO,
                "%s %s -> %d %s", request.method, request.url.path, mapped.status, e)
        return response_for(mapped)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form")]
        code = "invalid_value"
        if first.get("type") == "extra_forbidden":  # an OpenAI request's unknown field
            code = "unsupported_parameter"
            message = (f"{'.'.join(loc)} is not a field chinwag honours: it is refused rather "
                       "than ignored (README lists the fields honoured)")
        elif first.get("type") == "json_invalid":
            message = f"the request body is not valid JSON: {first.get('msg')}"
        elif first.get("type") == "model_attributes_type" or not loc:
            message = f"the request body must be a JSON object: {first.get('msg')}"
        else:
            message = f"{'.'.join(loc)}: {first.get('msg')}"
        log.info("%s %s -> 400 %s", request.method, request.url.path, message)
        return JSONResponse(error_body(message, "invalid_request_error",
                                       ".".join(loc) or None, code), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if e.status_code < 500 else "server_error"
        return JSONResponse(error_body(str(e.detail), kind, None, None),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error: {type(e).__name__}", "server_error"),
                            status_code=500)
