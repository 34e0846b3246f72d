"""Waiting on a condition, never on the clock (STYLE.md, section 10)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], seconds: float = 60, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail the test if it does not within ``seconds``
    (a deadline for a broken build, not a synchronisation: the condition is what is waited
    on)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {seconds} s: {what or condition}")
        time.sleep(0.01)


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    """Let the event loop and the workers run until ``condition`` holds (a deadline, not a
    synchronisation): ``wait_until`` for async tests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)
