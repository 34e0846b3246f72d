"""A client that goes away stops its request: out of the queue at once, out of the batch at the
next step.

uvicorn does not cancel a route when its client disconnects; it only answers ``http.disconnect``
to the next ``receive()``. A route that waits for the model (in the queue, or for a whole
non-streamed answer) would hold its place, and then a slot, for nobody: 200 abandoned requests
kept the next person waiting for seconds (vLLM's ``test_request_cancellation`` shows the same).
``unless_disconnected`` races the waiting against ``http.disconnect`` and cancels the waiting,
whose cleanup (``GenerationQueue``) leaves the line or stops the generation. Once a streamed
response has started, Starlette watches for the disconnect itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from chinwag.server.errors import APIError

T = TypeVar("T")

CLIENT_CLOSED = 499
"""The status logged for a request whose client left first (nginx's "client closed request");
nobody receives it."""


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Any, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client of ``request`` disconnects first.

    Call it after the request body has been read (the disconnect is read from the same
    ``receive`` channel).

    Raises:
        APIError: 499, the client disconnected (``work`` was cancelled and has cleaned up).
        Whatever ``work`` raises.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # its cleanup, then on
        watcher.cancel()
    if watcher.done() and not watcher.cancelled() and task.cancelled():
        raise APIError(CLIENT_CLOSED, "the client closed the request", code="client_closed")
    return task.result()
