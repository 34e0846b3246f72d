"""Clients that go away, on a real server: their requests leave the queue at once and the
batch at the next step, so the next person is served (vLLM's ``test_request_cancellation``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from support.server import metric
from support.waiting import wait_until

pytestmark = pytest.mark.slow

MODEL = "gemma-3-270m-q4_k_m"
ADMITTED = 'chinwag_engine_generations_total{event="admitted"}'
COUNTING = [{"role": "user", "content": "Count from 1 to 100."},
            {"role": "assistant", "content": ", ".join(str(i) for i in range(1, 101)) + "."},
            {"role": "user", "content": "Count from 1 to 100 again."}]
"""Greedy, the model copies the count for all of ``max_tokens`` 300 (seconds of work): the
answers being given cannot end before every request has reached the server."""


def held(url: str) -> float:
    """How many requests the server holds: in its queue, waiting for a slot, or generating."""
    return sum(metric(url, name) for name in
               ("chinwag_queue_depth", "chinwag_engine_waiting", "chinwag_engine_active"))


async def abandon(url: str, n: int, stream: bool) -> None:
    """``n`` chat requests at once, each given up by its client once the server holds all
    ``n`` (so that every one has reached the server, however busy the machine)."""
    body = {"model": MODEL, "max_tokens": 300, "stream": stream, "temperature": 0,
            "messages": COUNTING}
    leave = asyncio.Event()

    async def one(client: httpx.AsyncClient) -> None:
        async def read() -> None:
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
                async for _ in reply.aiter_bytes():
                    pass

        reading, told = asyncio.ensure_future(read()), asyncio.ensure_future(leave.wait())
        await asyncio.wait({reading, told}, return_when=asyncio.FIRST_COMPLETED)
        for task in (reading, told):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        clients = [asyncio.ensure_future(one(client)) for _ in range(n)]
        await asyncio.to_thread(wait_until, lambda: held(url) >= n, 60,  # the loop sends on
                                "the server holds every request")
        leave.set()
        await asyncio.gather(*clients)


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "not-streaming"])
def test_abandoned_requests_leave_and_the_next_person_is_served(
        make_server: Callable[..., Any], stream: bool) -> None:
    """40 requests for 2 slots, all abandoned: only those the model was on (and a few taken
    up while their clients were leaving) ever reach the engine, not all 40 in turn; then a
    fresh request is answered and the server is healthy."""
    s = make_server("--parallel", "2", "--max-queue", "64")
    before = metric(s.url, ADMITTED)
    asyncio.run(abandon(s.url, 40, stream))
    wait_until(lambda: metric(s.url, "chinwag_queue_depth") == 0
               and metric(s.url, "chinwag_engine_active") == 0
               and metric(s.url, "chinwag_engine_waiting") == 0,
               what="the server let go of every abandoned request")
    admitted = metric(s.url, ADMITTED) - before
    assert admitted < 20, admitted  # without cancellation all 40 are admitted one by one
    fresh = httpx.post(f"{s.url}/v1/chat/completions", timeout=120, json={
        "model": MODEL, "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Hello!"}]})
    assert fresh.status_code == 200, fresh.text
    answer = fresh.json()
    assert answer["usage"]["completion_tokens"] > 0, answer  # greedy here: "Hi, I'm a student at"
    assert answer["choices"][0]["message"]["content"], answer
    assert metric(s.url, ADMITTED) - before == admitted + 1
    assert httpx.get(f"{s.url}/health", timeout=10).status_code == 200
