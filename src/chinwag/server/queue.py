"""The server's line for the model: ``parallel`` generations at once, a fair bounded queue,
cancellation.

Up to ``parallel`` requests generate at the same time (the engine batches them into one decode
per step), each in its own worker thread whose tokens are handed to the event loop. The others
wait in one line per requester (the ``who`` of ``stream``: the request's user, else its
conversation, else the client's address), and a freed place goes to the lines in turn, round
robin, first come first served within a line: one user sending twenty requests waits behind
their own requests, not in front of everybody else's (llama.cpp's server and Ollama serve
strictly in arrival order). When ``max_queue`` requests are already waiting, a new one is
refused with ``Overloaded`` (HTTP 503 and ``Retry-After``). A request that stops waiting (its
client disconnected, its task was cancelled) leaves its line at once; a consumer that stops
reading stops its generation at the next step, even one blocked in the backend (the worker runs
inside a ``CancelScope`` that the backend registers its stop with), and frees its place.

Background work (a server batch's lines: requesters named ``BACKGROUND + batch id``) takes free
places only: a place goes to a background line only when no live request waits, and
background work never holds more than ``background_places`` places at once (half of
``parallel`` unless set, never all of them when there are two or more: one place when
``parallel`` is 1), so a live request finds a place at once, or, with one place, gets the next
one to come free ahead of every queued batch line. Fewer background places also keep the
engine's steps short, and a live request's first token waits for the step under way.
Background waiters do not count against ``max_queue``. Background work runs in a background
``CancelScope``, which tells the engine (``cancellation.in_background``) to hold it back while
a live prompt is computed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from chinwag.cancellation import stream_in_thread
from chinwag.errors import Overloaded

T = TypeVar("T")

BACKGROUND = "batch:"
"""The prefix of a background requester's name (``requester`` gives a server batch's lines
``batch:{id}``)."""


class GenerationQueue:
    """Runs blocking generators, ``parallel`` at a time, in worker threads, for async callers.

    Args:
        max_queue: most requests allowed to wait while ``parallel`` run.
        on_depth: called with the number of waiting requests whenever it changes (metrics).
        parallel: generations that run at once (the backend's batch size).
        background_places: most places background work may hold (see
            ``background_places``); default: half of ``parallel``.
    """

    def __init__(self, max_queue: int,
                 on_depth: Callable[[int], None] | None = None, parallel: int = 1,
                 background_places: int | None = None) -> None:
        self.max_queue = max_queue
        self.parallel = parallel
        self._background_limit = background_places
        self._on_depth = on_depth or (lambda _: None)
        self._running = 0
        self._running_background = 0
        self._lines: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._background: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._waiting = 0
        self._changed: asyncio.Event | None = None  # set (and replaced) when the lines move
        self._workers = parallel
        self._executor = ThreadPoolExecutor(max_workers=parallel,
                                            thread_name_prefix="chinwag-model")

    def resize(self, parallel: int) -> None:
        """Let ``parallel`` generations run at once from now on (a model loaded again may
        batch more or fewer); waiting requests take the new places at once. Call it on the
        event loop."""
        self.parallel = max(1, parallel)
        if self.parallel > self._workers:
            old, self._workers = self._executor, self.parallel
            self._executor = ThreadPoolExecutor(max_workers=self.parallel,
                                                thread_name_prefix="chinwag-model")
            old.shutdown(wait=False)
        self._hand_out()

    @property
    def waiting(self) -> int:
        """Live requests waiting for the model now (background ones not counted)."""
        return self._waiting

    @property
    def background_waiting(self) -> int:
        """Background requests waiting for a free place now."""
        return sum(len(line) for line in self._background.values())

    @property
    def background_places(self) -> int:
        """Most places background work may hold at once: the ``background_places`` given
        (half of ``parallel`` by default), at most ``parallel - 1``, at least 1."""
        wanted = self.parallel // 2 if self._background_limit is None else self._background_limit
        return max(1, min(wanted, self.parallel - 1))

    async def stream(self, start: Callable[[], Iterator[T]], who: str = "",
                     on_wait: Callable[[int], Awaitable[None]] | None = None
                     ) -> AsyncIterator[T]:
        """Wait for the model (in ``who``'s line), then yield what ``start()`` yields,
        produced in the worker.

        ``on_wait`` is awaited with the number of requests that will be served before this
        one (``ahead``) when it has to wait, and again each time that number changes.

        ``start`` is called in the worker thread; what it raises is raised here. Closing this
        async iterator early (or cancelling the task reading it) stops the generator at its
        next item and closes it, freeing the model for the next request.

        Raises:
            Overloaded: ``max_queue`` requests are already waiting.
        """
        background = who.startswith(BACKGROUND)
        await self._acquire(who, background, on_wait)
        try:
            async for item in self._run(start, background):
                yield item
        finally:
            self._release(background)

    def _free_for(self, background: bool) -> bool:
        """Whether a request of this kind may take a place now, ahead of nobody."""
        if self._running >= self.parallel or self._lines:
            return False
        return not background or (not self._background
                                   and self._running_background < self.background_places)

    def _take(self, background: bool) -> None:
        self._running += 1
        self._running_background += background

    async def _acquire(self, who: str, background: bool,
                       on_wait: Callable[[int], Awaitable[None]] | None = None) -> None:
        if self._free_for(background):
            self._take(background)
            return
        if not background and self._waiting >= self.max_queue:
            raise Overloaded(f"the server is busy: {self._waiting} requests are waiting; "
                             "retry later", retry_after=1)
        lines = self._background if background else self._lines
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lines.setdefault(who, deque()).append(turn)
        if not background:
            self._set_waiting(+1)
        self._moved()
        try:
            if on_wait is None:
                await turn
            else:
                await self._report(turn, on_wait)
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given a place, then cancelled
                self._release(background)
            else:
                line = lines.get(who)
                if line is not None and turn in line:
                    line.remove(turn)
                    if not line:
                        del lines[who]
                    self._moved()
            raise
        finally:
            if not background:
                self._set_waiting(-1)

    async def _report(self, turn: asyncio.Future[None],
                      on_wait: Callable[[int], Awaitable[None]]) -> None:
        """Wait for ``turn``, telling ``on_wait`` how many are ahead whenever it changes."""
        told: int | None = None
        while not turn.done():
            ahead = self.ahead(turn)
            if ahead != told:
                told = ahead
                await on_wait(ahead)
            if self._changed is None:
                self._changed = asyncio.Event()
            moved = asyncio.ensure_future(self._changed.wait())
            try:
                either: set[asyncio.Future[Any]] = {turn, moved}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
        await turn

    def ahead(self, turn: asyncio.Future[None]) -> int:
        """How many waiting requests will be given a place before ``turn`` (the lines taken
        in turn, as ``_hand_out`` does, live ones before background ones); the number
        waiting if it is not among them."""
        if any(turn in line for line in self._background.values()):
            return self._waiting + self._position(self._background, turn)
        return self._position(self._lines, turn)

    @staticmethod
    def _position(lines: OrderedDict[str, deque[asyncio.Future[None]]],
                  turn: asyncio.Future[None]) -> int:
        order = deque((who, deque(line)) for who, line in lines.items())
        count = 0
        while order:
            who, line = order.popleft()
            if line.popleft() is turn:
                return count
            count += 1
            if line:
                order.append((who, line))
        return count

    def _moved(self) -> None:
        """Wake the requests reporting their place (``_report``)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _release(self, background: bool) -> None:
        """Free a place and hand it to the next line in turn."""
        self._running -= 1
        self._running_background -= background
        self._hand_out()

    def _hand_out(self) -> None:
        """Give the free places to the live lines in turn, then, while none waits, to the
        background lines in turn, up to ``background_places`` of them."""
        while self._running < self.parallel and self._lines:
            self._next_turn(self._lines, background=False)
        while (self._running < self.parallel and self._background
               and self._running_background < self.background_places):
            self._next_turn(self._background, background=True)
        self._moved()

    def _next_turn(self, lines: OrderedDict[str, deque[asyncio.Future[None]]], *,
                   background: bool) -> None:
        who, line = next(iter(lines.items()))
        turn = line.popleft()
        if line:
            lines.move_to_end(who)  # this line's next request waits its turn
        else:
            del lines[who]
        if not turn.done():
            turn.set_result(None)
            self._take(background)

    def _set_waiting(self, change: int) -> None:
        self._waiting += change
        self._on_depth(self._waiting)

    async def _run(self, start: Callable[[], Iterator[T]],
                   background: bool) -> AsyncIterator[T]:
        async with contextlib.aclosing(stream_in_thread(start, self._executor,
                                                        background=background)) as items:
            async for item in items:
                yield item

    def close(self) -> None:
        """Stop the worker thread (after the running generation ends)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
