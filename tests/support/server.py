"""Reading a server's answers: a sample of its ``/metrics``, an OpenAI-shaped error."""

from __future__ import annotations

from typing import Any, Protocol

import httpx


def metric(url: str, name: str) -> float:
    """The value of one sample of ``url``'s Prometheus metrics (``name`` with its labels as
    the server writes them, e.g. ``chinwag_engine_generations_total{event="admitted"}``)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    raise AssertionError(f"{name} not in {url}/metrics")


class Client(Protocol):
    """Something that GETs a path of a server (the ``TestClient``)."""

    def get(self, url: str) -> Any: ...


def hook_events(client: Client, platform: str, outcome: str) -> float:
    """``chinwag_hook_events_total`` of ``platform`` and ``outcome`` in an in-process app's
    ``/metrics`` (0 before the first)."""
    sample = f'chinwag_hook_events_total{{outcome="{outcome}",platform="{platform}"}}'
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


class Reply(Protocol):
    """An HTTP response (httpx's, or the ``TestClient``'s)."""

    def json(self) -> Any: ...


def error_of(reply: Reply) -> dict[str, Any]:
    """The error object of ``reply``, checked to have exactly OpenAI's fields
    (``{"error": {"message", "type", "param", "code"}}``)."""
    body = reply.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return dict(body["error"])
