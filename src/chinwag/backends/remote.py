"""HTTP to a remote LLM server, shared by the ``openai`` and ``http`` backends.

The one place where transport failures and HTTP statuses become chinwag's errors:

- connection refused, DNS failures, timeouts, a dropped connection: retried, then
  ``BackendUnreachable``;
- 429: retried (honouring ``Retry-After``), then ``BackendRateLimited``;
- 5xx: retried, then ``BackendServerError``;
- 401 and 403: ``BackendAuthError`` at once; another 4xx: ``BackendRejected`` at once (sending
  the same request again would not help). A 4xx whose message says the prompt is too long
  becomes ``ContextOverflow`` when the caller can say how long it was.

Retries wait ``backoff * 2**attempt`` seconds (capped at 8 s), or what ``Retry-After`` asks
(capped at 30 s), the schedule the OpenAI and Anthropic client libraries use. A stream is
retried only until its first byte arrives; after that a failure ends it with
``BackendUnreachable`` (the text already streamed cannot be taken back).

The defaults of every remote backend live here once (``TIMEOUT_S``, ``MAX_RETRIES``,
``BACKOFF_S``, ``CONTEXT_LENGTH``), as do the config fields they share (``RemoteConfig``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import httpx
from pydantic import Field

from chinwag.backends.base import BackendConfig
from chinwag.errors import (
    BackendAuthError,
    BackendRateLimited,
    BackendRejected,
    BackendServerError,
    BackendUnreachable,
    RemoteError,
)

log = logging.getLogger("chinwag.backends.remote")

MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 30.0

TIMEOUT_S = 120.0
"""Seconds a remote backend waits for each read (a token of a stream, or a whole answer)."""
MAX_RETRIES = 3
"""Attempts after the first for retryable failures."""
BACKOFF_S = 0.5
"""Seconds before the first retry; doubled after each."""
CONTEXT_LENGTH = 4096
"""A remote model's context window, tokens, when its config does not say."""


class RemoteConfig(BackendConfig):
    """The config fields every remote backend has (``openai``, ``http``)."""

    timeout: float = Field(TIMEOUT_S, gt=0, description="Seconds to wait for each read.")
    max_retries: int = Field(MAX_RETRIES, ge=0, le=20,
                             description="Retries after the first attempt.")
    backoff: float = Field(BACKOFF_S, ge=0,
                           description="Seconds before the first retry, doubled after each.")


_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too long",
                  "exceeds the available context", "context_length_exceeded")


def says_context_overflow(error: RemoteError) -> bool:
    """Whether a refusal's message says the prompt is longer than the context window (in the
    words OpenAI, vLLM, llama.cpp and chinwag use)."""
    return isinstance(error, BackendRejected) and \
        any(w in str(error).lower() for w in _CONTEXT_WORDS)


def _message_of(response: httpx.Response) -> str:
    """The server's own words: OpenAI's ``error.message``, FastAPI's ``detail``, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("error", "detail", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return json.dumps(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


class RemoteClient:
    """JSON over HTTP to one server, with retries and chinwag's errors (module docstring).

    Args:
        base_url: the server's address, e.g. ``http://gpu-box:8000/v1``; request paths are
            relative to it.
        headers: sent with every request (``Authorization``...).
        timeout: seconds to wait for each read (a token of a stream, or a whole answer).
        connect_timeout: seconds to wait for a connection.
        max_retries: attempts after the first for retryable failures (0: none).
        backoff: seconds before the first retry; doubled after each.
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
        sleep: how to wait between attempts (tests pass a recorder).
    """

    def __init__(self, base_url: str, *, headers: Mapping[str, str] | None = None,
                 timeout: float = TIMEOUT_S, connect_timeout: float = 5.0,
                 max_retries: int = MAX_RETRIES, backoff: float = BACKOFF_S,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url, headers=dict(headers or {}), transport=transport,
            timeout=httpx.Timeout(timeout, connect=connect_timeout))

    def url(self, path: str) -> str:
        """The full address of ``path``."""
        return str(self._client.build_request("GET", path).url)

    def post(self, path: str, body: Any) -> Any:
        """POST ``body`` as JSON; the answer's JSON.

        Raises:
            RemoteError: see the module docstring; also when the answer is not JSON.
        """
        return self._json(self._send("POST", path, body))

    def get(self, path: str) -> Any:
        """GET ``path``; the answer's JSON. Raises as ``post``."""
        return self._json(self._send("GET", path, None))

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise BackendServerError(
                f"{response.request.url} answered {response.status_code} with something that "
                f"is not JSON: {response.text[:200]!r}", url=str(response.request.url),
                status=response.status_code) from None

    def _send(self, method: str, path: str, body: Any, *, stream: bool = False
              ) -> httpx.Response:
        """Send with retries; return the first 2xx/3xx response (open, when ``stream``)."""
        url = self.url(path)
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                request = self._client.build_request(method, path, json=body)
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as e:
                failure: RemoteError = BackendUnreachable(
                    f"cannot reach {url}: {type(e).__name__}: {e or 'no answer'}",
                    url=url, attempts=attempt)
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    response.read()
                    response.close()
                failure = self._failure(response, url, attempt)
                wait = _retry_after(response)
            if isinstance(failure, BackendRejected) or attempt > self.max_retries:
                raise failure
            delay = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
            if wait is not None:
                delay = min(wait, MAX_RETRY_AFTER_S)
            log.warning("%s (attempt %d of %d); retrying in %.1f s", failure, attempt,
                        self.max_retries + 1, delay)
            self._sleep(delay)

    @staticmethod
    def _failure(response: httpx.Response, url: str, attempt: int) -> RemoteError:
        status = response.status_code
        said = f"{url} answered {status}: {_message_of(response)}"
        if status == 429:
            return BackendRateLimited(said, url=url, attempts=attempt,
                                      retry_after=_retry_after(response))
        if status >= 500:
            return BackendServerError(said, url=url, status=status, attempts=attempt)
        if status in (401, 403):
            return BackendAuthError(f"{said} (check the api_key of this LLM's config)",
                                    url=url, status=status, attempts=attempt)
        return BackendRejected(said, url=url, status=status, attempts=attempt)

    def count_tokens(self, path: str, text: str, **fields: Any) -> int:
        """Ask a tokenize endpoint how many tokens ``text`` is: POST ``{"content": text,
        "prompt": text, **fields}`` (llama.cpp's, vLLM's and chinwag's shapes) and read vLLM's
        ``count``, else the length of ``tokens``.

        Raises:
            RemoteError: as ``post``; ``BackendServerError`` when the answer has no count.
        """
        answer = self.post(path, {"content": text, "prompt": text, **fields})
        if isinstance(answer, dict):
            if isinstance(answer.get("count"), int):
                return int(answer["count"])
            if isinstance(answer.get("tokens"), list):
                return len(answer["tokens"])
        raise BackendServerError(f"{self.url(path)} gave no token count: {str(answer)[:200]}",
                                 url=self.url(path))

    def stream_lines(self, path: str, body: Any) -> Generator[str, None, None]:
        """POST ``body`` and yield the answer's lines as they arrive (retried until the first
        byte). Closing the iterator closes the connection, which is how OpenAI-compatible
        servers learn to stop generating.

        Raises:
            RemoteError: as ``post``; ``BackendUnreachable`` when the stream breaks.
        """
        response = self._send("POST", path, body, stream=True)
        try:
            yield from response.iter_lines()
        except httpx.TransportError as e:
            raise BackendUnreachable(f"the stream from {response.request.url} broke: "
                                     f"{type(e).__name__}: {e}", url=str(response.request.url),
                                     status=response.status_code) from None
        finally:
            response.close()

    def server_sent_events(self, path: str, body: Any) -> Generator[Any, None, None]:
        """POST ``body`` and yield the JSON of each ``data:`` line of a server-sent event
        stream (the WHATWG format OpenAI uses), until ``data: [DONE]`` or the end.

        Raises:
            RemoteError: as ``stream_lines``; ``BackendServerError`` for an event that is not
                JSON, or that carries an ``error`` (servers report failures mid-stream so).
        """
        lines = self.stream_lines(path, body)
        try:
            for line in lines:
                if not line.startswith("data:"):
                    continue  # comments, "event:" and "id:" fields, keep-alive blank lines
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    raise BackendServerError(f"{self.url(path)} streamed an event that is not "
                                             f"JSON: {data[:200]!r}", url=self.url(path)) from None
                if isinstance(event, dict) and event.get("error"):
                    error = event["error"]
                    said = error.get("message", error) if isinstance(error, dict) else error
                    raise BackendServerError(f"{self.url(path)} reported an error mid-stream: "
                                             f"{said}", url=self.url(path))
                yield event
        finally:
            lines.close()

    def close(self) -> None:
        """Close the connections. Idempotent."""
        self._client.close()
