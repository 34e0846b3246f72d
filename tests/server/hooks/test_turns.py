"""The hooks' shared parts that need no server: cutting long answers, events seen once,
display names as speakers, and the platform client's retries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from chinwag.errors import PlatformError
from chinwag.server.hooks.platform import MAX_WAIT, PlatformClient, retry_after
from chinwag.server.hooks.turns import SeenEvents, speaker, split_text
from support.platforms import FakeAPI, fake_api


def test_split_text_keeps_every_character_and_the_limit() -> None:
    text = ("word " * 700) + "\n" + ("x" * 4500) + "\nend"
    pieces = split_text(text, 2000)
    assert "".join(pieces) == text
    assert all(0 < len(p) <= 2000 for p in pieces)
    assert pieces[0].endswith(" ")  # cut after a space, not inside a word
    assert split_text("short", 2000) == ["short"] and split_text("", 10) == [""]
    with pytest.raises(ValueError):
        split_text("x", 0)


def test_split_text_prefers_line_breaks() -> None:
    assert split_text("line one\nline two", 12) == ["line one\n", "line two"]


def test_seen_events_remembers_within_its_time_and_size() -> None:
    now = [0.0]
    seen = SeenEvents(keep=60, size=3, clock=lambda: now[0])
    assert seen.first("a") and not seen.first("a")
    now[0] = 61
    assert seen.first("a")  # forgotten after keep
    assert seen.first("b") and seen.first("c") and seen.first("d")
    assert seen.first("a")  # the oldest went when the fourth came


def test_speaker_names() -> None:
    assert speaker("Alice") == "Alice"
    assert speaker("  Bob:  the\nbuilder ") == "Bob the builder"
    assert speaker("::") is None and speaker(None) is None
    assert len(speaker("x" * 100) or "") == 40


def test_retry_after_is_read_in_seconds() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "2.5"})) == 2.5
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(429)) is None
    assert MAX_WAIT <= 60


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with fake_api() as running:
        yield running


def test_a_429_and_a_5xx_are_tried_again_and_a_4xx_is_returned(api: FakeAPI) -> None:
    api.script = [(429, {"Retry-After": "0"}, {}), (502, {"Retry-After": "0"}, {}),
                  (404, {}, {"message": "Unknown Webhook"})]

    async def main() -> httpx.Response:
        client = PlatformClient(api.url, {"Authorization": "Bot t"})
        try:
            return await client.call("PATCH", "webhooks/1/tok/messages/@original", {"a": 1})
        finally:
            await client.close()

    response = asyncio.run(main())
    assert response.status_code == 404
    assert [c.path for c in api.calls] == ["/webhooks/1/tok/messages/@original"] * 3
    assert all(c.headers["authorization"] == "Bot t" and c.body == {"a": 1} for c in api.calls)


def test_every_try_failing_is_a_platform_error(api: FakeAPI) -> None:
    api.default = (503, {"Retry-After": "0"}, {})

    async def main() -> None:
        client = PlatformClient(api.url, {}, tries=3)
        try:
            await client.call("POST", "chat.postMessage", {})
        finally:
            await client.close()

    with pytest.raises(PlatformError, match="HTTP 503 on each of 3 tries"):
        asyncio.run(main())
    assert len(api.calls) == 3


def test_no_answer_is_a_platform_error() -> None:
    with fake_api() as gone:
        url = gone.url  # a port nothing listens on once the block ends

    async def main() -> None:
        client = PlatformClient(url, {}, tries=2)
        try:
            await client.call("POST", "chat.postMessage", {})
        finally:
            await client.close()

    with pytest.raises(PlatformError, match="no answer"):
        asyncio.run(main())


def _after(response: httpx.Response) -> float:
    """The wait the client picks after ``response`` on its first try."""
    from tenacity import Future, RetryCallState

    from chinwag.server.hooks.platform import _TryAgain, _wait

    state = RetryCallState(None, None, (), {})
    outcome = Future(1)
    outcome.set_exception(_TryAgain(response))
    state.outcome = outcome
    return _wait(state)


def test_the_wait_is_what_retry_after_asks_within_bounds() -> None:
    assert _after(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    assert _after(httpx.Response(429, headers={"Retry-After": "3600"})) == MAX_WAIT
    assert 0 < _after(httpx.Response(503)) <= 8  # no Retry-After: the backoff
