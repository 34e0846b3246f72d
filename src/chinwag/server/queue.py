"""The server's line for the model: ``parallel`` generations at once, a bounded queue,
cancellation.

Up to ``parallel`` requests generate at the same time (the engine batches them into one decode
per step), each in its own worker thread whose tokens are handed to the event loop; the others
wait in arrival order. When more than ``max_queue`` requests are already waiting, a new one is
refused with ``Overloaded`` (HTTP 503 and ``Retry-After``). A consumer that stops reading (a
client that disconnected) stops its generation at the next token and frees its place.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from chinwag.errors import Overloaded

T = TypeVar("T")


@dataclass
class _Failure:
    error: BaseException


_END = object()


class GenerationQueue:
    """Runs blocking generators, ``parallel`` at a time, in worker threads, for async callers.

    Args:
        max_queue: most requests allowed to wait while ``parallel`` run.
        on_depth: called with the number of waiting requests whenever it changes (metrics).
        parallel: generations that run at once (the backend's batch size).
    """

    def __init__(self, max_queue: int,
                 on_depth: Callable[[int], None] | None = None, parallel: int = 1) -> None:
        self.max_queue = max_queue
        self.parallel = parallel
        self._on_depth = on_depth or (lambda _: None)
        self._slots = asyncio.Semaphore(parallel)
        self._waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=parallel,
                                            thread_name_prefix="chinwag-model")

    @property
    def waiting(self) -> int:
        """Requests waiting for the model now."""
        return self._waiting

    async def stream(self, start: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """Wait for the model, then yield what ``start()`` yields, produced in the worker.

        ``start`` is called in the worker thread; what it raises is raised here. Closing this
        async iterator early (or cancelling the task reading it) stops the generator at its
        next item and closes it, freeing the model for the next request.

        Raises:
            Overloaded: ``max_queue`` requests are already waiting.
        """
        if self._slots.locked() and self._waiting >= self.max_queue:
            raise Overloaded(f"the server is busy: {self._waiting} requests are waiting; "
                             "retry later", retry_after=1)
        self._waiting += 1
        self._on_depth(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self._on_depth(self._waiting)
        try:
            async for item in self._run(start):
                yield item
        finally:
            self._slots.release()

    async def _run(self, start: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def put(item: object) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(items.put_nowait, item)

        def work() -> None:
            try:
                iterator = start()
                try:
                    for item in iterator:
                        if stop.is_set():
                            break
                        put(item)
                finally:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
                put(_END)
            except BaseException as e:  # handed to the awaiting request
                put(_Failure(e))

        done = loop.run_in_executor(self._executor, work)
        try:
            while True:
                item = await items.get()
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            if not done.done():
                # wait for the worker to let go of the model before the next request starts
                await asyncio.shield(done)

    def close(self) -> None:
        """Stop the worker thread (after the running generation ends)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
