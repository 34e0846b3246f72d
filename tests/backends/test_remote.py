"""RemoteClient: retries, backoff and the translation of failures into chinwag's errors.

Served by ``httpx.MockTransport`` (httpx's own test transport), so each status is exact; the
same client against real servers is tested in test_openai_http.py and test_raw_http.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx
import pytest

from chinwag.backends.remote import RemoteClient, says_context_overflow
from chinwag.errors import (
    BackendAuthError,
    BackendRateLimited,
    BackendRejected,
    BackendServerError,
    BackendUnreachable,
)


def client_for(handler: Callable[[httpx.Request], httpx.Response], *, retries: int = 3,
               waits: list[float] | None = None) -> RemoteClient:
    record = waits if waits is not None else []
    return RemoteClient("http://upstream.test/v1", transport=httpx.MockTransport(handler),
                        max_retries=retries, backoff=0.5, sleep=record.append)


def sequence(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)
    return lambda request: queue.pop(0)


def test_500_then_success_is_retried_with_backoff() -> None:
    waits: list[float] = []
    client = client_for(sequence(httpx.Response(500, json={"error": {"message": "boom"}}),
                                 httpx.Response(502, text="bad gateway"),
                                 httpx.Response(200, json={"ok": 1})), waits=waits)
    assert client.post("/x", {}) == {"ok": 1}
    assert waits == [0.5, 1.0]


def test_5xx_on_every_attempt_raises_server_error_with_the_servers_words() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"error": {"message": "model is loading"}})

    with pytest.raises(BackendServerError) as e:
        client_for(handler, retries=2).post("/x", {})
    assert len(calls) == 3 and e.value.attempts == 3 and e.value.status == 503
    assert "model is loading" in str(e.value) and "http://upstream.test/v1/x" in str(e.value)


def test_429_honours_retry_after_then_gives_up_as_rate_limited() -> None:
    waits: list[float] = []
    with pytest.raises(BackendRateLimited) as e:
        client_for(lambda r: httpx.Response(429, headers={"Retry-After": "7"},
                                            json={"detail": "slow down"}),
                   retries=1, waits=waits).post("/x", {})
    assert waits == [7.0]
    assert e.value.retry_after == 7.0 and "slow down" in str(e.value)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_not_retried(status: int) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"error": {"message": "Invalid API Key"}})

    with pytest.raises(BackendAuthError) as e:
        client_for(handler).post("/x", {})
    assert calls == [1] and e.value.status == status
    assert "Invalid API Key" in str(e.value) and "api_key" in str(e.value)


def test_a_400_is_rejected_at_once_and_context_words_are_recognised() -> None:
    with pytest.raises(BackendRejected) as e:
        client_for(lambda r: httpx.Response(400, json={"error": {
            "message": "This model's maximum context length is 2048 tokens."}})).post("/x", {})
    assert says_context_overflow(e.value)
    with pytest.raises(BackendRejected) as other:
        client_for(lambda r: httpx.Response(400, text="bad field")).post("/x", {})
    assert not says_context_overflow(other.value)


def test_a_closed_port_is_unreachable_after_the_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    waits: list[float] = []
    client = RemoteClient(f"http://127.0.0.1:{port}", max_retries=2, backoff=0.01,
                          sleep=waits.append)
    with pytest.raises(BackendUnreachable) as e:
        client.post("/v1/completions", {})
    assert e.value.attempts == 3 and len(waits) == 2 and e.value.status is None
    assert f"127.0.0.1:{port}" in str(e.value)


def test_an_answer_that_is_not_json_is_a_server_error() -> None:
    with pytest.raises(BackendServerError, match="not JSON"):
        client_for(lambda r: httpx.Response(200, text="<html>proxy</html>")).post("/x", {})


def test_server_sent_events_until_done_and_errors_mid_stream() -> None:
    body = "".join(f"data: {json.dumps({'n': i})}\n\n" for i in range(3)) + \
        ": keep-alive\n\ndata: [DONE]\n\ndata: {\"n\": 99}\n\n"
    client = client_for(lambda r: httpx.Response(200, text=body))
    assert [e["n"] for e in client.server_sent_events("/x", {})] == [0, 1, 2]

    broken = 'data: {"n": 0}\n\ndata: {"error": {"message": "CUDA out of memory"}}\n\n'
    events = client_for(lambda r: httpx.Response(200, text=broken)).server_sent_events("/x", {})
    assert next(events) == {"n": 0}
    with pytest.raises(BackendServerError, match="CUDA out of memory"):
        next(events)


def test_a_stream_is_retried_only_before_its_first_byte() -> None:
    waits: list[float] = []
    client = client_for(sequence(httpx.Response(500, text="warming up"),
                                 httpx.Response(200, text='data: {"n": 1}\n\n')), waits=waits)
    assert list(client.server_sent_events("/x", {})) == [{"n": 1}]
    assert waits == [0.5]
