"""The model registry's rules on scripted backends, with an injected loader and a manual
clock: LRU, busy models kept, idle unload, keep_alive, the memory budget, one load for
concurrent first requests, failed loads, unload waiting for running requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.support.waiting import until

from chinwag.backends.base import LanguageBackend
from chinwag.backends.scripted import ScriptedBackend
from chinwag.errors import (
    ChinwagError,
    InvalidParams,
    ModelLoadError,
    ModelLoadFailed,
    Overloaded,
    UnknownModel,
)
from chinwag.llms import (
    FOREVER,
    ModelHandle,
    ModelRegistry,
    ModelSpec,
    ModelStatus,
    parse_keep_alive,
)
from chinwag.types import Done, SamplingParams


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Events:
    """What the registry reported, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def loaded(self, model: str, backend: LanguageBackend, seconds: float) -> None:
        self.log.append(("loaded", model))

    def load_failed(self, model: str, error: ChinwagError) -> None:
        self.log.append(("failed", model))

    def unloaded(self, model: str, reason: str) -> None:
        self.log.append(("unloaded", model, reason))


class Loader:
    """Makes a scripted backend per load, counting loads; ``sizes`` sets each model's
    memory; ``gate`` (when set) holds loads until it is set; ``fail`` makes the next load of
    a model raise."""

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        self.sizes = sizes or {}
        self.calls: list[str] = []
        self.gate: threading.Event | None = None
        self.fail: set[str] = set()
        self.closed: list[str] = []

    def __call__(self, spec: ModelSpec) -> LanguageBackend:
        self.calls.append(spec.id)
        if self.gate is not None:
            assert self.gate.wait(30)
        if spec.id in self.fail:
            self.fail.discard(spec.id)
            raise ModelLoadError(f"{spec.id}.gguf is not a GGUF file")
        backend = SizedBackend(self.sizes.get(spec.id, 0), default_reply=f"I am {spec.id}")
        backend.on_close = lambda: self.closed.append(spec.id)
        return backend


class SizedBackend(ScriptedBackend):
    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.on_close: Callable[[], None] = lambda: None

    def memory_bytes(self) -> int:
        return self.size

    def close(self) -> None:
        self.on_close()


def make(ids: str = "abc", **kwargs: Any) -> tuple[ModelRegistry, Loader, Clock, Events]:
    loader = kwargs.pop("loader", None) or Loader()
    clock, events = Clock(), Events()
    registry = ModelRegistry([ModelSpec(i) for i in ids], loader, clock=clock, events=events,
                             **kwargs)
    return registry, loader, clock, events


def statuses(registry: ModelRegistry) -> dict[str, str]:
    return {s.id: s.status.value for s in registry.states()}


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


async def use(registry: ModelRegistry, model: str, **kwargs: Any) -> None:
    (await registry.acquire(model, **kwargs)).release()


def test_models_load_on_first_use_and_the_least_recently_used_idle_one_goes() -> None:
    registry, loader, clock, events = make(max_loaded=2)

    async def main() -> None:
        assert statuses(registry) == {"a": "unloaded", "b": "unloaded", "c": "unloaded"}
        await use(registry, "a")
        clock.now += 1
        await use(registry, "b")
        clock.now += 1
        await use(registry, "a")  # a is now the more recent
        clock.now += 1
        assert statuses(registry) == {"a": "loaded", "b": "loaded", "c": "unloaded"}
        await use(registry, "c")
        assert statuses(registry) == {"a": "loaded", "b": "unloaded", "c": "loaded"}
        assert ("unloaded", "b", "max_models") in events.log
        assert loader.calls == ["a", "b", "c"] and loader.closed == ["b"]

    run(main)


def test_a_busy_model_is_never_evicted_the_request_waits_then_gets_its_turn() -> None:
    registry, loader, _clock, _events = make(max_loaded=1)

    async def main() -> None:
        held = await registry.acquire("a")
        waiting = asyncio.create_task(registry.acquire("b"))
        await until(lambda: registry.waiting == 1)  # parked until a model falls idle
        assert not waiting.done()
        assert statuses(registry)["a"] == "loaded" and loader.calls == ["a"]
        assert registry.state("a").requests == 1
        held.release()
        lease = await waiting
        assert lease.model == "b" and statuses(registry) == {
            "a": "unloaded", "b": "loaded", "c": "unloaded"}
        lease.release()

    run(main)


def test_with_nothing_to_evict_the_request_gets_503_after_the_wait() -> None:
    registry, *_ = make(max_loaded=1, wait=0)

    async def main() -> None:
        held = await registry.acquire("a")
        with pytest.raises(Overloaded) as e:
            await registry.acquire("b")
        assert e.value.retry_after >= 1 and "busy" in str(e.value)
        held.release()
        await use(registry, "b")

    run(main)


def test_an_idle_model_is_unloaded_after_the_idle_time() -> None:
    registry, _loader, clock, events = make(idle=10)

    async def main() -> None:
        await use(registry, "a")
        clock.now += 9
        assert await registry.sweep() == []
        state = registry.state("a")
        assert state.expires_at is not None and state.idle_since is not None
        clock.now += 1
        assert await registry.sweep() == ["a"]
        assert statuses(registry)["a"] == "unloaded"
        assert events.log[-1] == ("unloaded", "a", "idle")

    run(main)


def test_a_busy_model_is_not_unloaded_for_being_idle() -> None:
    registry, _loader, clock, _ = make(idle=10)

    async def main() -> None:
        held = await registry.acquire("a")
        clock.now += 100
        assert await registry.sweep() == []
        assert registry.state("a").expires_at is None
        held.release()
        clock.now += 10
        assert await registry.sweep() == ["a"]

    run(main)


def test_keep_alive_of_a_request_overrides_the_default() -> None:
    registry, _loader, clock, _ = make(idle=10)

    async def main() -> None:
        await use(registry, "a", keep_alive=FOREVER)
        await use(registry, "b", keep_alive=3)
        clock.now += 3
        assert await registry.sweep() == ["b"]
        clock.now += 1000
        assert await registry.sweep() == []
        assert statuses(registry)["a"] == "loaded"
        assert registry.state("a").expires_at is None

    run(main)


def test_keep_alive_zero_unloads_as_soon_as_the_model_is_idle() -> None:
    registry, *_ = make()

    async def main() -> None:
        held = await registry.acquire("a", keep_alive=0)
        assert statuses(registry)["a"] == "loaded"
        held.release()
        await until(lambda: statuses(registry)["a"] == "unloaded")

    run(main)


def test_the_memory_budget_evicts_the_idle_models_it_must() -> None:
    loader = Loader(sizes={"a": 60, "b": 30, "c": 50})
    registry, _, clock, events = make(max_loaded=3, max_bytes=100, loader=loader)

    async def main() -> None:
        await use(registry, "a")
        clock.now += 1
        await use(registry, "b")  # 90 bytes: both fit
        clock.now += 1
        assert statuses(registry) == {"a": "loaded", "b": "loaded", "c": "unloaded"}
        await use(registry, "c")  # 140 > 100 once measured: the LRU one (a) goes
        await until(lambda: ("unloaded", "a", "memory") in events.log)
        assert statuses(registry) == {"a": "unloaded", "b": "loaded", "c": "loaded"}
        clock.now += 1
        await use(registry, "a")  # its size is known now: room is made before loading it
        assert statuses(registry) == {"a": "loaded", "b": "unloaded", "c": "unloaded"}
        assert registry.state("a").size_bytes == 60

    run(main)


def test_concurrent_first_requests_cause_one_load() -> None:
    registry, loader, *_ = make()
    loader.gate = threading.Event()

    async def main() -> None:
        waiting = [asyncio.create_task(registry.acquire("a")) for _ in range(5)]
        await until(lambda: loader.calls == ["a"])
        assert statuses(registry)["a"] == "loading"
        loader.gate.set()
        leases = await asyncio.gather(*waiting)
        assert loader.calls == ["a"]
        assert len({id(lease.backend) for lease in leases}) == 1
        assert registry.state("a").requests == 5
        for lease in leases:
            lease.release()
        assert registry.state("a").requests == 0

    run(main)


def test_a_failed_load_is_reported_to_every_waiter_and_retried_by_the_next_request() -> None:
    registry, loader, _, events = make()
    loader.fail.add("a")
    loader.gate = threading.Event()

    async def main() -> None:
        waiting = [asyncio.create_task(registry.acquire("a")) for _ in range(2)]
        await until(lambda: loader.calls == ["a"])
        loader.gate.set()
        for task in waiting:
            with pytest.raises(ModelLoadFailed) as e:
                await task
            assert "a.gguf is not a GGUF file" in str(e.value)
        state = registry.state("a")
        assert state.status is ModelStatus.FAILED and "not a GGUF" in (state.error or "")
        assert ("failed", "a") in events.log
        await use(registry, "a")
        assert registry.state("a").status is ModelStatus.LOADED
        assert registry.state("a").error is None and loader.calls == ["a", "a"]

    run(main)


def test_unload_lets_the_running_requests_finish_first() -> None:
    registry, loader, _, events = make()

    async def main() -> None:
        held = await registry.acquire("a")
        unloading = asyncio.create_task(registry.unload("a"))
        await until(lambda: registry.waiting == 1)  # the unload waits for the lease
        assert not unloading.done() and loader.closed == []
        # a request arriving meanwhile waits for the unload, then loads the model again
        later = asyncio.create_task(registry.acquire("a"))
        await until(lambda: registry.waiting == 2)
        assert not later.done()
        held.release()
        assert await unloading is True
        assert ("unloaded", "a", "request") in events.log and loader.closed == ["a"]
        lease = await later
        assert loader.calls == ["a", "a"]
        lease.release()
        assert await registry.unload("b") is False  # not loaded

    run(main)


def test_unknown_model() -> None:
    registry, *_ = make()

    async def main() -> None:
        with pytest.raises(UnknownModel, match="models: a, b, c"):
            await registry.acquire("zz")

    run(main)


def test_a_worker_thread_gets_the_model_loaded_through_the_loop() -> None:
    registry, _loader, *_ = make(max_loaded=1)

    async def main() -> None:
        registry.bind()
        await use(registry, "a")
        lease = await asyncio.to_thread(registry.acquire_sync, "b")
        assert lease.model == "b" and statuses(registry)["a"] == "unloaded"
        await asyncio.to_thread(lease.release)
        await until(lambda: registry.state("b").requests == 0)
        with pytest.raises(RuntimeError, match="block"):
            registry.acquire_sync("c")  # on the loop's own thread

    run(main)


def test_a_handle_holds_its_model_until_the_stream_is_closed() -> None:
    registry, *_ = make(max_loaded=1, wait=0)
    handle = ModelHandle(registry, "a")

    async def main() -> None:
        registry.bind()
        stream = await asyncio.to_thread(handle.generate, "Hello", SamplingParams())
        with pytest.raises(Overloaded):
            await registry.acquire("b")
        events = await asyncio.to_thread(list, stream)
        assert isinstance(events[-1], Done)
        await until(lambda: registry.state("a").idle_since is not None)
        await use(registry, "b")
        assert statuses(registry)["a"] == "unloaded"
        # counting tokens loads the model again (a worker thread)
        assert await asyncio.to_thread(handle.count_tokens, "one two") == 2
        assert statuses(registry) == {"a": "loaded", "b": "unloaded", "c": "unloaded"}

    run(main)


def test_an_adopted_model_is_loaded_from_the_start() -> None:
    registry, loader, _, events = make()
    registry.adopt("a", SizedBackend(7))
    assert registry.state("a").status is ModelStatus.LOADED
    assert registry.state("a").size_bytes == 7 and loader.calls == []
    assert events.log == [("loaded", "a")]


def test_aliases_resolve_and_duplicates_are_refused() -> None:
    registry = ModelRegistry([ModelSpec("default", aliases=("gemma",)), ModelSpec("smol")],
                             Loader())
    assert registry.resolve("gemma") == "default" and registry.resolve("smol") == "smol"
    assert registry.resolve("other") is None and registry.default == "default"
    with pytest.raises(ValueError, match="twice"):
        ModelRegistry([ModelSpec("a"), ModelSpec("b", aliases=("a",))], Loader())


@pytest.mark.parametrize(("given", "seconds"), [
    (None, None), (30, 30.0), (2.5, 2.5), ("45", 45.0), ("5m", 300.0), ("1h30m", 5400.0),
    ("250ms", 0.25), ("0", 0.0), (0, 0.0), (-1, FOREVER), ("-1m", FOREVER), ("1.5s", 1.5)])
def test_keep_alive_is_read_as_ollama_reads_it(given: Any, seconds: float | None) -> None:
    assert parse_keep_alive(given) == seconds


@pytest.mark.parametrize("given", ["soon", "5 minutes", "m", "", "5x", True])
def test_a_keep_alive_that_is_not_a_duration_is_refused(given: Any) -> None:
    with pytest.raises(InvalidParams) as e:
        parse_keep_alive(given)
    assert e.value.param == "keep_alive"


def test_a_resident_model_stays_and_is_not_counted() -> None:
    registry, _loader, clock, _ = make(max_loaded=1, idle=1)
    registry.adopt("a", SizedBackend(7), resident=True)

    async def main() -> None:
        await use(registry, "b")
        clock.now += 1
        await use(registry, "c")
        assert statuses(registry) == {"a": "loaded", "b": "unloaded", "c": "loaded"}
        clock.now += 100
        assert await registry.sweep() == ["c"]
        assert await registry.unload("a") is False
        assert statuses(registry)["a"] == "loaded"

    run(main)
