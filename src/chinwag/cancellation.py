"""Stopping work that runs in another thread, from the thread that waits for it.

The server runs each generation in a worker thread and hands its events to the event loop.
When the client goes away, the loop must stop the generation even while the worker is blocked
inside the backend, reading nothing (waiting for a slot, or in a long prefill). So the worker
runs the work inside a ``CancelScope`` (``cancel_scope``); whatever the work starts that can be
stopped registers how to stop it (``on_cancel``: the llama.cpp backend registers
``Engine.cancel``); the loop calls ``scope.cancel()``. Outside a scope, ``on_cancel`` does
nothing: the CLI and scripts stop a generation by closing its iterator.

Like ``asyncio``'s or Go's context cancellation, the scope travels in a ``ContextVar``, so the
layers in between (chatbot, backend base class) need not pass it along. It carries the work's
priority the same way: a scope made for background work (a server batch's line) tells the
engine, through ``in_background``, that live requests go first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class CancelScope:
    """Callbacks to run once, from any thread, when the work they belong to must stop.

    Attributes:
        background: the work is background work (``in_background``).
    """

    def __init__(self, *, background: bool = False) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.cancelled = False
        self.background = background

    def add(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on ``cancel`` (at once if the scope is already cancelled)."""
        with self._lock:
            if not self.cancelled:
                self._callbacks.append(callback)
                return
        callback()

    def cancel(self) -> None:
        """Run every callback registered so far, once; later ones run as they are added."""
        with self._lock:
            self.cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


_current: ContextVar[CancelScope | None] = ContextVar("chinwag_cancel_scope", default=None)


@contextmanager
def cancel_scope(scope: CancelScope) -> Iterator[CancelScope]:
    """Make ``scope`` the one ``on_cancel`` registers with, in this thread, for the block."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def in_background() -> bool:
    """Whether the work running in this thread is background work (its scope says so)."""
    scope = _current.get()
    return scope is not None and scope.background


def on_cancel(callback: Callable[[], None]) -> None:
    """Register ``callback`` with the current ``CancelScope``, if any."""
    scope = _current.get()
    if scope is not None:
        scope.add(callback)


@dataclass
class _Failure:
    error: BaseException


_END = object()


async def stream_in_thread(start: Callable[[], Iterator[T]],
                           executor: Executor | None = None, *,
                           background: bool = False) -> AsyncGenerator[T, None]:
    """Yield what ``start()`` yields, produced in a worker thread (of ``executor``, default:
    the event loop's) inside a ``CancelScope`` (a background one with ``background``).

    ``start`` is called in the worker; what it raises is raised here. Closing this async
    iterator early (or cancelling the task reading it) stops the generator at its next item,
    even one blocked in the backend (the scope is cancelled), closes it, and waits for the
    worker to let go before returning.
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()
    scope = CancelScope(background=background)

    def put(item: object) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(items.put_nowait, item)

    def work() -> None:
        try:
            with cancel_scope(scope):
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
        except BaseException as e:  # handed to the awaiting task
            put(_Failure(e))

    done = loop.run_in_executor(executor, work)
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
            scope.cancel()  # the worker may be blocked inside the backend, reading nothing
            # wait for the worker to let go of the model before the next request starts
            await asyncio.shield(done)
