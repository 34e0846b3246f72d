"""The fair queue: round robin across requesters, first come first served within one, the
bound, and cancellation while waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from chinwag.errors import Overloaded
from chinwag.server.queue import BACKGROUND, GenerationQueue
from support.waiting import until


class Log:
    """Generators that record when they start and block until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = threading.Event()

    def job(self, name: str, *, hold: bool = False) -> Iterator[str]:
        self.started.append(name)
        if hold:
            self.gate.wait(10)
        yield name


async def run_one(queue: GenerationQueue, log: Log, name: str, who: str,
                  hold: bool = False) -> list[str]:
    return [x async for x in queue.stream(lambda: log.job(name, hold=hold), who)]


def test_a_user_with_many_requests_does_not_starve_another() -> None:
    async def main() -> list[str]:
        queue, log = GenerationQueue(max_queue=50, parallel=1), Log()
        blocker = asyncio.create_task(run_one(queue, log, "first", "x", hold=True))
        await until(lambda: log.started == ["first"])
        tasks = [asyncio.create_task(run_one(queue, log, f"a{i}", "alice")) for i in range(5)]
        await until(lambda: queue.waiting == 5)
        tasks.append(asyncio.create_task(run_one(queue, log, "b0", "bob")))
        tasks.append(asyncio.create_task(run_one(queue, log, "c0", "carol")))
        await until(lambda: queue.waiting == 7)
        log.gate.set()
        await asyncio.gather(blocker, *tasks)
        queue.close()
        return log.started

    started = asyncio.run(main())
    # bob and carol wait behind one of alice's requests, not five; alice's stay in order
    assert started == ["first", "a0", "b0", "c0", "a1", "a2", "a3", "a4"]


def test_the_bound_still_answers_overloaded() -> None:
    async def main() -> None:
        queue, log = GenerationQueue(max_queue=2, parallel=1), Log()
        blocker = asyncio.create_task(run_one(queue, log, "first", "x", hold=True))
        await until(lambda: log.started == ["first"])
        waiting = [asyncio.create_task(run_one(queue, log, f"w{i}", f"u{i}")) for i in range(2)]
        await until(lambda: queue.waiting == 2)
        with pytest.raises(Overloaded):
            await run_one(queue, log, "late", "u9")
        log.gate.set()
        await asyncio.gather(blocker, *waiting)
        assert log.started == ["first", "w0", "w1"]
        queue.close()

    asyncio.run(main())


def test_a_request_cancelled_while_waiting_leaves_the_line() -> None:
    async def main() -> None:
        queue, log = GenerationQueue(max_queue=10, parallel=1), Log()
        blocker = asyncio.create_task(run_one(queue, log, "first", "x", hold=True))
        await until(lambda: log.started == ["first"])
        gone = asyncio.create_task(run_one(queue, log, "gone", "alice"))
        kept = asyncio.create_task(run_one(queue, log, "kept", "bob"))
        await until(lambda: queue.waiting == 2)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        assert queue.waiting == 1
        log.gate.set()
        await asyncio.gather(blocker, kept)
        assert log.started == ["first", "kept"]
        # every place is free again: the next request starts at once
        assert await run_one(queue, log, "again", "alice") == ["again"]
        queue.close()

    asyncio.run(main())


def test_parallel_places_are_all_used() -> None:
    async def main() -> None:
        queue, log = GenerationQueue(max_queue=10, parallel=3), Log()
        tasks = [asyncio.create_task(run_one(queue, log, f"r{i}", "same", hold=True))
                 for i in range(4)]
        await until(lambda: len(log.started) == 3 and queue.waiting == 1)
        assert sorted(log.started) == ["r0", "r1", "r2"]
        log.gate.set()
        await asyncio.gather(*tasks)
        assert log.started[-1] == "r3"
        queue.close()

    asyncio.run(main())


def test_a_consumer_that_leaves_stops_a_worker_blocked_inside_the_backend() -> None:
    """The worker waits inside the backend (for a slot, in a long prefill) and reads nothing:
    cancelling the consumer stops it through the ``CancelScope`` the backend registered with,
    and the place is free for the next request."""
    from chinwag.cancellation import on_cancel

    stopped, started = threading.Event(), threading.Event()

    def blocked() -> Iterator[str]:
        on_cancel(stopped.set)
        started.set()
        stopped.wait(10)
        yield "too late"

    async def main() -> None:
        queue, log = GenerationQueue(max_queue=10, parallel=1), Log()
        consumer = asyncio.create_task(anext(aiter(queue.stream(blocked, "x"))))
        await until(started.is_set)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        assert stopped.is_set()
        assert await run_one(queue, log, "next", "y") == ["next"]
        queue.close()

    asyncio.run(main())


def test_a_waiting_request_is_told_how_many_are_ahead_of_it() -> None:
    async def main() -> list[int]:
        queue, log = GenerationQueue(max_queue=50, parallel=1), Log()
        blocker = asyncio.create_task(run_one(queue, log, "first", "x", hold=True))
        await until(lambda: log.started == ["first"])
        others = [asyncio.create_task(run_one(queue, log, f"a{i}", "alice", hold=True))
                  for i in range(2)]
        await until(lambda: queue.waiting == 2)
        told: list[int] = []

        async def ahead(n: int) -> None:
            told.append(n)

        async def mine() -> list[str]:
            return [x async for x in queue.stream(lambda: log.job("bob", hold=True), "bob",
                                                   ahead)]

        bob = asyncio.create_task(mine())
        await until(lambda: told == [1])  # round robin: one of alice's, then bob
        log.gate.set()
        await asyncio.gather(blocker, *others, bob)
        queue.close()
        return told

    assert asyncio.run(main()) == [1, 0]


def test_a_live_request_is_served_ahead_of_queued_batch_lines() -> None:
    """One place: a batch line holds it, three more wait; a live request that comes later
    gets the next free place."""
    async def main() -> list[str]:
        queue, log = GenerationQueue(max_queue=10, parallel=1), Log()
        batch = [asyncio.create_task(run_one(queue, log, f"b{i}", f"{BACKGROUND}one",
                                             hold=True)) for i in range(4)]
        await until(lambda: log.started == ["b0"] and queue.background_waiting == 3)
        assert queue.waiting == 0  # batch lines are not counted against max_queue
        live = asyncio.create_task(run_one(queue, log, "live", "alice"))
        await until(lambda: queue.waiting == 1)
        log.gate.set()
        await asyncio.gather(*batch, live)
        queue.close()
        return log.started

    assert asyncio.run(main()) == ["b0", "live", "b1", "b2", "b3"]


def test_background_places_are_half_of_parallel_unless_set_and_never_all() -> None:
    assert [GenerationQueue(1, parallel=n).background_places for n in (1, 2, 3, 8)] == [
        1, 1, 1, 4]
    assert GenerationQueue(1, parallel=8, background_places=7).background_places == 7
    assert GenerationQueue(1, parallel=8, background_places=20).background_places == 7


def test_batch_lines_leave_a_place_free_for_live_requests() -> None:
    async def main() -> None:
        queue, log = GenerationQueue(max_queue=10, parallel=3, background_places=2), Log()
        batch = [asyncio.create_task(run_one(queue, log, f"b{i}", f"{BACKGROUND}one",
                                             hold=True)) for i in range(5)]
        await until(lambda: len(log.started) == 2 and queue.background_waiting == 3)
        live = asyncio.create_task(run_one(queue, log, "live", "alice", hold=True))
        await until(lambda: "live" in log.started)
        assert sorted(log.started) == ["b0", "b1", "live"] and queue.waiting == 0
        log.gate.set()
        await asyncio.gather(*batch, live)
        assert sorted(log.started) == ["b0", "b1", "b2", "b3", "b4", "live"]
        queue.close()

    asyncio.run(main())
