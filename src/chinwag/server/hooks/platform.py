"""Calling a platform's HTTP API (Slack's Web API, Discord's interaction webhooks): httpx with
timeouts, retried by tenacity on what a later try may fix, waiting what the platform asks.

Retried: a 429 or a 5xx answer, and a request that got no answer (refused, reset, timed out).
The wait before the next try is the answer's ``Retry-After`` (seconds, as Slack and Discord
send it; at most ``MAX_WAIT``), else an exponential backoff. Any other answer is returned as
it is, for the caller to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from chinwag.errors import PlatformError

TRIES = 4
MAX_WAIT = 30.0
"""Most seconds waited between two tries, whatever ``Retry-After`` says."""
_BACKOFF = wait_exponential(multiplier=0.5, max=8)


class _TryAgain(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def retry_after(response: httpx.Response) -> float | None:
    """The seconds a response asks the client to wait (``Retry-After`` in seconds), or None."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, _TryAgain):
        asked = retry_after(error.response)
        if asked is not None:
            return min(asked, MAX_WAIT)
    return float(_BACKOFF(state))


@dataclass
class PlatformClient:
    """One platform's API: ``base_url`` (``slack_api_url``, ``discord_api_url``) and the
    headers every call carries (a bot token).

    Attributes:
        base_url: the API's root; calls name paths below it.
        headers: sent with every call.
        timeout: seconds for connecting, and for each read.
        tries: calls made at most, the first included.
    """

    base_url: str
    headers: dict[str, str]
    timeout: float = 10.0
    tries: int = TRIES

    def __post_init__(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.base_url.rstrip("/") + "/",
                                         headers=self.headers,
                                         timeout=httpx.Timeout(self.timeout))

    async def call(self, method: str, path: str, json: Any = None, *,
                   params: Mapping[str, str] | None = None) -> httpx.Response:
        """Send ``json`` (None: no body) to ``path`` (relative to ``base_url``, with the query
        ``params``) and return the answer, after retrying as the module docstring says.

        Raises:
            PlatformError: every try got a 429, a 5xx or no answer.
        """
        try:
            async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.tries), wait=_wait, reraise=True,
                    retry=retry_if_exception_type((_TryAgain, httpx.TransportError))):
                with attempt:
                    response = await self._client.request(method, path.lstrip("/"), json=json,
                                                          params=params)
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _TryAgain(response)
                    return response
        except _TryAgain as e:
            raise PlatformError(f"{method} {path}: HTTP {e.response.status_code} on each of "
                                f"{self.tries} tries") from None
        except httpx.TransportError as e:
            raise PlatformError(f"{method} {path}: no answer ({type(e).__name__}) on each of "
                                f"{self.tries} tries") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Close the connections."""
        await self._client.aclose()
