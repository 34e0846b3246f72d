"""API keys: ``Authorization: Bearer KEY`` or ``X-Api-Key: KEY``, when keys are configured."""

from __future__ import annotations

import hmac

from fastapi import Request

from chinwag.server.errors import APIError
from chinwag.server.state import get_state


def key_from_headers(headers: dict[str, str] | object) -> str | None:
    """The API key a request carries, if any."""
    get = getattr(headers, "get")  # noqa: B009 - works for Starlette Headers and dicts
    auth = get("authorization") or ""
    if auth.lower().startswith("bearer "):
        return str(auth[7:].strip())
    key = get("x-api-key")
    return str(key) if key else None


def check_key(keys: list[str], given: str | None) -> None:
    """Raise a 401 unless ``given`` is one of ``keys`` (no keys configured: always fine)."""
    if not keys:
        return
    if given is None:
        raise APIError(401, "missing API key: send 'Authorization: Bearer KEY' or 'X-Api-Key'",
                       code="invalid_api_key")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise APIError(401, "invalid API key", code="invalid_api_key")


async def require_key(request: Request) -> None:
    """FastAPI dependency for every route but /health and the web page."""
    check_key(get_state(request).settings.api_keys(), key_from_headers(request.headers))
