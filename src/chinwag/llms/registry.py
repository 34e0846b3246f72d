"""Several LLMs in one process: loaded on first use, unloaded by least recent use, by memory
and when idle (``ModelRegistry``).

The rules are Ollama's and llama-server's router mode's, in one process:

- a model loads when a request first needs it; concurrent first requests share one load;
- at most ``max_loaded`` models (llama-server's ``--models-max``) and ``max_bytes`` of memory
  are loaded at once; loading one more unloads the least recently used model that has no
  request running ("max_models" or "memory"). A busy model is never unloaded: when nothing can
  go, the request waits up to ``wait`` seconds for a model to fall idle, then gets
  ``Overloaded`` (HTTP 503 with ``Retry-After``);
- a model idle for its ``keep_alive`` seconds is unloaded ("idle"); a request's
  ``keep_alive`` (Ollama's field) replaces the default ``idle`` from then on: 0 unloads as soon
  as the model is idle, a negative value keeps it loaded;
- a load that fails raises ``ModelLoadFailed`` (HTTP 500, the loader's message) in every
  request waiting for it and marks the model ``failed``; the next request tries again;
- ``unload`` ("request") lets the requests running on the model finish; requests arriving
  meanwhile wait and load it again afterwards.

A request holds a ``Lease`` on its model for as long as it uses it (a pin: the model cannot go
while any lease is held). ``acquire`` is the async way (it may load, evict or wait);
``acquire_sync`` is for worker threads (a loaded model is pinned there at once, under a lock;
anything else is done on the event loop). Decisions to load and evict are taken on the event
loop, one at a time; loading and closing a model run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from chinwag.backends.base import LanguageBackend
from chinwag.errors import ChinwagError, InvalidParams, ModelLoadFailed, Overloaded, UnknownModel

log = logging.getLogger("chinwag.llms")

FOREVER = math.inf
"""``keep_alive`` of a model that is never unloaded for being idle."""

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def parse_keep_alive(value: float | int | str | None) -> float | None:
    """Ollama's ``keep_alive``: seconds (a number, or a number in a string), or a Go duration
    string (``"5m"``, ``"1h30m"``, ``"250ms"``, ``"-1m"``) as Ollama reads it.

    Returns:
        seconds, ``FOREVER`` for a negative value (Ollama: keep loaded), None for None.

    Raises:
        InvalidParams: a string that is neither a number nor a duration (param ``keep_alive``).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidParams("keep_alive must be seconds or a duration such as '5m'",
                            param="keep_alive")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            parts = _DURATION.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise InvalidParams(f"keep_alive {value!r} is neither seconds nor a duration "
                                    "such as '30s', '5m' or '1h30m'", param="keep_alive") from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if math.isnan(seconds):
        raise InvalidParams("keep_alive must be a number of seconds", param="keep_alive")
    return FOREVER if seconds < 0 else seconds


class ModelStatus(StrEnum):
    """Where a model stands, as ``/v1/models`` shows it."""

    LOADED = "loaded"
    LOADING = "loading"
    UNLOADED = "unloaded"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelSpec:
    """One LLM the registry may load.

    Attributes:
        id: its id in the API (``model``), e.g. ``smollm2``.
        ref: what the loader is given (an LLM config name or file; None for the model the
            settings describe).
        description: a line for ``/v1/models``.
        estimate_bytes: memory it is expected to take before it has been loaded (for a GGUF,
            the file's size); once loaded, its measured size is used instead.
        aliases: other names requests may use for it (the model file's name).
    """

    id: str
    ref: str | None = None
    description: str = ""
    estimate_bytes: int = 0
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelState:
    """A snapshot of one model (``/v1/models``, ``GET /models``, ``chinwag ps``).

    Attributes:
        id: the model's id.
        status: loaded, loading, unloaded or failed.
        size_bytes: memory it takes when loaded (measured), else its estimate (0: unknown).
        requests: requests running on it now.
        loaded_at: when it was loaded (Unix time), or None.
        idle_since: when its last request ended (Unix time) if none runs now, else None.
        expires_at: when it will be unloaded for being idle (Unix time), or None (never, or
            not idle).
        loads: how many times it has been loaded.
        error: why its last load failed, or None.
        device: where it runs ("CPU", "GPU (...)"), when loaded and the backend says.
    """

    id: str
    status: ModelStatus
    size_bytes: int
    requests: int
    loaded_at: float | None
    idle_since: float | None
    expires_at: float | None
    loads: int
    error: str | None
    device: str | None


class ModelEvents(Protocol):
    """What the registry reports as it loads and unloads (metrics, the model's line)."""

    def loaded(self, model: str, backend: LanguageBackend, seconds: float) -> None:
        """``model`` was loaded in ``seconds``."""

    def load_failed(self, model: str, error: ChinwagError) -> None:
        """Loading ``model`` failed."""

    def unloaded(self, model: str, reason: str) -> None:
        """``model`` was unloaded: "max_models", "memory", "idle", "request" or "shutdown"."""


@dataclass(eq=False)
class _Entry:
    spec: ModelSpec
    status: ModelStatus = ModelStatus.UNLOADED
    backend: LanguageBackend | None = None
    pins: int = 0  # leases held (a request, and each backend call made on its behalf)
    requests: int = 0  # leases taken by requests (shown as "requests running")
    keep_alive: float = FOREVER
    last_used: float = 0.0  # the registry's clock
    idle_since: float | None = None  # wall clock
    loaded_at: float | None = None
    size: int = 0  # measured when loaded
    loads: int = 0
    error: str | None = None
    unloading: bool = False
    resident: bool = False  # the caller's backend: never unloaded, not counted in the limits
    loading: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def usable(self) -> bool:
        return self.status is ModelStatus.LOADED and not self.unloading


class Lease:
    """A hold on a loaded model: it stays loaded until ``release`` (which any thread may call,
    once or more; a lease that is garbage-collected unreleased releases itself).

    Attributes:
        model: the model's id.
        backend: the loaded model.
    """

    def __init__(self, registry: ModelRegistry, entry: _Entry, request: bool) -> None:
        self._registry, self._entry, self._request = registry, entry, request
        self.model = entry.spec.id
        assert entry.backend is not None
        self.backend: LanguageBackend = entry.backend
        self._released = False

    def release(self) -> None:
        """Let the model go (it is unloaded only if nothing else holds it)."""
        if not self._released:
            self._released = True
            self._registry._release(self._entry, self._request)

    def __del__(self) -> None:
        if not getattr(self, "_released", True):
            log.warning("a lease on %s was not released; releasing it now", self.model)
            self.release()


class ModelRegistry:
    """The LLMs one server offers, loaded on demand (see the module docstring).

    Args:
        specs: the models, the default first (ids and aliases unique).
        loader: loads a model (blocking; run in a worker thread); what it raises is reported
            as ``ModelLoadFailed`` with its message.
        max_loaded: most models loaded at once (>= 1).
        max_bytes: most bytes the loaded models may take together (None: no limit). A model
            larger than the limit on its own is still loaded when nothing else is.
        idle: default ``keep_alive`` seconds (None: never unloaded for being idle).
        wait: seconds a request waits for a model to fall idle when it needs room, before
            ``Overloaded``.
        clock: monotonic seconds (tests pass a manual clock); ``wall``: Unix time for the
            snapshots.
        events: told of loads, failures and unloads.
        size_of: the memory a loaded backend takes, bytes (default: its ``memory_bytes()``).

    Attributes:
        waiting: requests (and unloads) parked now until a model falls idle.

    Raises:
        ValueError: no specs, or an id or alias given twice.
    """

    def __init__(self, specs: Sequence[ModelSpec],
                 loader: Callable[[ModelSpec], LanguageBackend], *, max_loaded: int = 2,
                 max_bytes: int | None = None, idle: float | None = None, wait: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, events: ModelEvents | None = None,
                 size_of: Callable[[LanguageBackend], int] | None = None) -> None:
        if not specs:
            raise ValueError("a model registry needs at least one model")
        self._entries: dict[str, _Entry] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            for name in (spec.id, *spec.aliases):
                if self._names.setdefault(name, spec.id) != spec.id:
                    raise ValueError(f"model name {name!r} is given twice")
            if spec.id in self._entries:
                raise ValueError(f"model id {spec.id!r} is given twice")
            self._entries[spec.id] = _Entry(spec)
        self.default = specs[0].id
        self._loader = loader
        self.max_loaded = max(1, max_loaded)
        self.max_bytes = max_bytes
        self.idle = FOREVER if idle is None else idle
        self.wait = wait
        self._clock, self._wall = clock, wall
        self._events = events
        self._size_of = size_of or (lambda backend: backend.memory_bytes())
        self._lock = threading.Lock()  # pins and statuses, from any thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Lock | None = None  # one load-or-evict decision at a time
        self._changed: asyncio.Event | None = None  # set (and replaced) when a pin is freed
        self._tasks: set[asyncio.Task[None]] = set()  # loads and sweeps started on the loop
        self.waiting = 0  # requests (and unloads) waiting for a model to fall idle
        self._closed = False

    # -- names -----------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """Every model's id, the default first."""
        return list(self._entries)

    def resolve(self, name: str) -> str | None:
        """The id of the model called ``name`` (its id or an alias), or None."""
        return self._names.get(name)

    def spec(self, model: str) -> ModelSpec:
        """The spec of model ``model`` (an id or alias).

        Raises:
            UnknownModel: no such model (HTTP 404).
        """
        return self._entry(model).spec

    def loaded_backend(self, model: str) -> LanguageBackend | None:
        """The backend of ``model`` if it is loaded now (not pinned: for reading what it is,
        not for using it from another thread)."""
        entry = self._entry(model)
        return entry.backend if entry.usable else None

    def loaded(self) -> list[LanguageBackend]:
        """The backends loaded now (metrics read their counters)."""
        with self._lock:
            return [e.backend for e in self._entries.values() if e.backend is not None]

    def _entry(self, model: str) -> _Entry:
        found = self._names.get(model)
        if found is None:
            raise UnknownModel(model, self.ids)
        return self._entries[found]

    # -- leases ----------------------------------------------------------------------------

    def bind(self) -> asyncio.AbstractEventLoop:
        """Tie the registry to the running event loop (where loads and evictions are
        decided); every async method does it, ``acquire_sync`` needs it done."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._room = asyncio.Lock()
            self._changed = asyncio.Event()
        return loop

    def _pin(self, entry: _Entry, request: bool, keep_alive: float | None) -> Lease | None:
        """Pin a usable model at once (any thread), else None."""
        with self._lock:
            if not entry.usable:
                return None
            entry.pins += 1
            entry.requests += request
            entry.idle_since = None
            entry.last_used = self._clock()
            if keep_alive is not None:
                entry.keep_alive = keep_alive
            return Lease(self, entry, request)

    def _release(self, entry: _Entry, request: bool) -> None:
        with self._lock:
            entry.pins -= 1
            entry.requests -= request
            entry.last_used = self._clock()
            freed = entry.pins == 0
            if freed:
                entry.idle_since = self._wall()
        if freed and self._loop is not None and not self._loop.is_closed():
            with suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._freed, entry)

    def _freed(self, entry: _Entry) -> None:
        """On the loop: a model fell idle; wake whoever waits for room, unload it now if its
        keep_alive is 0."""
        self._notify()
        if entry.keep_alive == 0 and entry.pins == 0 and not self._closed:
            self._loop_task(self.sweep())

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _loop_task(self, coro: Coroutine[object, object, object]) -> None:
        assert self._loop is not None

        async def run() -> None:
            await coro

        task = self._loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def acquire(self, model: str, keep_alive: float | None = None, *,
                      request: bool = True) -> Lease:
        """A lease on ``model`` (an id or alias), loading it first if needed.

        Args:
            keep_alive: seconds the model stays loaded once idle, from now on (see
                ``parse_keep_alive``); None keeps what it had (at first, ``idle``).
            request: counts as a request running on the model (False for a call made on a
                request's behalf).

        Raises:
            UnknownModel: no such model (404).
            ModelLoadFailed: loading it failed (500, the loader's message).
            Overloaded: no room for it within ``wait`` seconds (503).
        """
        loop = self.bind()
        entry = self._entry(model)
        deadline = loop.time() + self.wait
        while True:
            if self._closed:
                raise Overloaded("the server is shutting down", retry_after=5)
            lease = self._pin(entry, request, keep_alive)
            if lease is not None:
                return lease
            if entry.status is ModelStatus.LOADING and entry.loading is not None:
                await asyncio.shield(entry.loading)
                continue
            if entry.unloading or not await self._start_load(entry):
                await self._wait_change(entry, deadline)

    def acquire_sync(self, model: str, keep_alive: float | None = None, *,
                     request: bool = False) -> Lease:
        """``acquire`` from a worker thread: a loaded model is pinned at once; otherwise the
        event loop loads it (or waits for room) while this thread blocks.

        Raises:
            RuntimeError: called on the event loop's own thread for a model not loaded
                (that would block the loop: use ``acquire``).
            UnknownModel, ModelLoadFailed, Overloaded: as ``acquire``.
        """
        entry = self._entry(model)
        lease = self._pin(entry, request, keep_alive)
        if lease is not None:
            return lease
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the model registry has not been used on an event loop yet")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(f"model {entry.spec.id} is not loaded, and loading it from the "
                               "event loop's thread would block it")
        return asyncio.run_coroutine_threadsafe(
            self.acquire(model, keep_alive, request=request), loop).result()

    @asynccontextmanager
    async def pinned(self, model: str, keep_alive: float | None = None
                     ) -> AsyncIterator[LanguageBackend]:
        """``async with registry.pinned(model) as backend:`` a request on ``model``."""
        lease = await self.acquire(model, keep_alive)
        try:
            yield lease.backend
        finally:
            lease.release()

    async def _wait_change(self, entry: _Entry, deadline: float) -> None:
        """Wait until a model falls idle or is unloaded, else raise ``Overloaded`` at
        ``deadline``."""
        assert self._loop is not None and self._changed is not None
        remaining = deadline - self._loop.time()
        if remaining <= 0:
            raise Overloaded(
                f"no room to load model {entry.spec.id}: the {self.max_loaded} loaded "
                "model(s) are busy" if not entry.unloading else
                f"model {entry.spec.id} is being unloaded", retry_after=max(1, round(self.wait)))
        self.waiting += 1
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        finally:
            self.waiting -= 1

    # -- loading and unloading -------------------------------------------------------------

    async def _start_load(self, entry: _Entry) -> bool:
        """Make room for ``entry`` and start loading it; False when there is no room now."""
        assert self._room is not None
        async with self._room:
            if entry.status in (ModelStatus.LOADED, ModelStatus.LOADING) or entry.unloading:
                return True
            while True:  # a victim pinned meanwhile (a worker thread) means planning again
                victims = self._victims(entry)
                if victims is None:
                    return False
                if all([await self._unload(victim, reason) for victim, reason in victims]):
                    break
            with self._lock:
                entry.status = ModelStatus.LOADING
                entry.error = None
            assert self._loop is not None
            entry.loading = self._loop.create_future()
            self._loop_task(self._load(entry, entry.loading))
            return True

    def _occupied(self) -> list[_Entry]:
        """The models loaded or loading that count against the limits."""
        return [e for e in self._entries.values() if not e.resident
                and e.status in (ModelStatus.LOADED, ModelStatus.LOADING)]

    def _size(self, entry: _Entry) -> int:
        return entry.size or entry.spec.estimate_bytes

    def _victims(self, entry: _Entry) -> list[tuple[_Entry, str]] | None:
        """The models to unload to make room for ``entry`` (least recently used first, none
        of them busy), or None when not enough of them can go."""
        occupied = self._occupied()
        surplus = len(occupied) + 1 - self.max_loaded
        over = (sum(self._size(e) for e in occupied) + self._size(entry) - self.max_bytes
                if self.max_bytes is not None else 0)
        idle = sorted((e for e in occupied if e.usable and e.pins == 0),
                      key=lambda e: e.last_used)
        victims: list[tuple[_Entry, str]] = []
        for candidate in idle:
            if surplus <= 0 and over <= 0:
                break
            victims.append((candidate, "max_models" if surplus > 0 else "memory"))
            surplus -= 1
            over -= self._size(candidate)
        if surplus > 0:
            return None
        if over > 0 and len(victims) < len(occupied):
            return None  # the others are busy: wait for them
        return victims

    async def _load(self, entry: _Entry, done: asyncio.Future[None]) -> None:
        started = self._clock()
        try:
            backend = await asyncio.to_thread(self._loader, entry.spec)
        except Exception as e:
            message = str(e) or type(e).__name__
            error = ModelLoadFailed(entry.spec.id, message)
            with self._lock:
                entry.status = ModelStatus.FAILED
                entry.error = message
            log.error("loading model %s failed: %s", entry.spec.id, message)
            if self._events is not None:
                self._events.load_failed(entry.spec.id, error)
            done.set_exception(error)
            done.exception()  # retrieved: nobody may be waiting
            self._notify()
            return
        seconds = self._clock() - started
        self._set_loaded(entry, backend)
        log.info("model %s loaded in %.1f s (%d MB)", entry.spec.id, seconds, entry.size >> 20)
        if self._events is not None:
            self._events.loaded(entry.spec.id, backend, seconds)
        done.set_result(None)
        if self.max_bytes is not None:
            await self._trim(entry)
        if self._closed:
            await self._unload(entry, "shutdown")
        self._notify()

    def _set_loaded(self, entry: _Entry, backend: LanguageBackend, *,
                    resident: bool = False) -> None:
        """Record ``backend`` as ``entry``'s, loaded now (its size measured), idle."""
        try:
            size = self._size_of(backend)
        except Exception:  # a size is a nicety: the estimate stands in
            size = 0
        with self._lock:
            entry.backend = backend
            entry.status = ModelStatus.LOADED
            entry.resident = resident
            entry.size = size or entry.spec.estimate_bytes
            entry.loads += 1
            entry.loaded_at = entry.idle_since = self._wall()
            entry.last_used = self._clock()
            entry.keep_alive = self.idle

    async def _trim(self, keep: _Entry) -> None:
        """Unload idle models (least recently used first) while the loaded ones take more than
        ``max_bytes`` (a model's measured size can exceed its estimate)."""
        assert self.max_bytes is not None and self._room is not None
        async with self._room:
            while sum(self._size(e) for e in self._occupied()) > self.max_bytes:
                idle = sorted((e for e in self._occupied()
                               if e is not keep and e.usable and e.pins == 0),
                              key=lambda e: e.last_used)
                if not idle:
                    return
                await self._unload(idle[0], "memory")

    async def _unload(self, entry: _Entry, reason: str) -> bool:
        """Unload ``entry`` and close its backend; False (nothing done) if a lease is held on
        it or it is not loaded."""
        with self._lock:
            if entry.status is not ModelStatus.LOADED or entry.pins or entry.resident:
                return False
            backend, entry.backend = entry.backend, None
            entry.status = ModelStatus.UNLOADED  # its size stays: the next load's estimate
            entry.loaded_at = entry.idle_since = None
        log.info("model %s unloaded (%s)", entry.spec.id, reason)
        if backend is not None:
            await asyncio.to_thread(backend.close)
        if self._events is not None:
            self._events.unloaded(entry.spec.id, reason)
        self._notify()
        return True

    async def load(self, model: str, keep_alive: float | None = None) -> ModelState:
        """Load ``model`` now if it is not (``POST /models/load``); it counts as a use.

        Raises:
            UnknownModel, ModelLoadFailed, Overloaded: as ``acquire``.
        """
        lease = await self.acquire(model, keep_alive, request=False)
        lease.release()
        return self.state(model)

    async def unload(self, model: str) -> bool:
        """Unload ``model`` once the requests running on it have finished (``POST
        /models/unload``); requests arriving meanwhile wait, then load it again.

        Returns:
            False if it was not loaded.

        Raises:
            UnknownModel: no such model.
        """
        loop = self.bind()
        entry = self._entry(model)
        if entry.status is ModelStatus.LOADING and entry.loading is not None:
            await asyncio.gather(asyncio.shield(entry.loading), return_exceptions=True)
        if entry.status is not ModelStatus.LOADED or entry.unloading or entry.resident:
            return False
        with self._lock:
            entry.unloading = True
        try:
            while entry.pins:
                await self._wait_change(entry, loop.time() + 3600)
            assert self._room is not None
            async with self._room:
                await self._unload(entry, "request")
        finally:
            with self._lock:
                entry.unloading = False
            self._notify()
        return True

    async def sweep(self) -> list[str]:
        """Unload every model idle for longer than its ``keep_alive``; the ids unloaded.
        (The server calls this every second; tests call it with a manual clock.)"""
        self.bind()
        assert self._room is not None
        gone: list[str] = []
        async with self._room:
            now = self._clock()
            for entry in list(self._entries.values()):
                if (entry.usable and entry.pins == 0 and not entry.resident
                        and entry.keep_alive != FOREVER
                        and now - entry.last_used >= entry.keep_alive
                        and await self._unload(entry, "idle")):
                    gone.append(entry.spec.id)
        return gone

    def adopt(self, model: str, backend: LanguageBackend, *, resident: bool = False) -> None:
        """Register ``backend`` as ``model``, loaded already (the default model, loaded at
        start with a progress bar).

        Args:
            resident: the backend is the caller's (a script's or a test's, which the loader
                could not make again): it is never unloaded and does not count against
                ``max_loaded`` and ``max_bytes``.
        """
        entry = self._entry(model)
        self._set_loaded(entry, backend, resident=resident)
        if self._events is not None:
            self._events.loaded(entry.spec.id, backend, 0.0)

    async def close(self, *, keep: LanguageBackend | None = None) -> None:
        """Unload every model ("shutdown"); ``keep`` (a backend the caller owns) is left
        open. Loads still running are unloaded when they end."""
        self._closed = True
        for entry in self._entries.values():
            with self._lock:
                backend, entry.backend = entry.backend, None
                was = entry.status
                if was is ModelStatus.LOADED:
                    entry.status = ModelStatus.UNLOADED
            if backend is not None and backend is not keep:
                await asyncio.to_thread(backend.close)
            if was is ModelStatus.LOADED and self._events is not None:
                self._events.unloaded(entry.spec.id, "shutdown")
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- snapshots -------------------------------------------------------------------------

    def state(self, model: str) -> ModelState:
        """A snapshot of ``model``.

        Raises:
            UnknownModel: no such model.
        """
        entry = self._entry(model)
        backend = entry.backend
        device = None
        if backend is not None:
            with suppress(ChinwagError):
                device = str(backend.info().extra.get("device") or "") or None
        with self._lock:
            expires = None
            if (entry.usable and entry.pins == 0 and entry.keep_alive != FOREVER
                    and entry.idle_since is not None):
                expires = self._wall() + max(
                    0.0, entry.keep_alive - (self._clock() - entry.last_used))
            return ModelState(
                id=entry.spec.id, status=entry.status, size_bytes=self._size(entry),
                requests=entry.requests, loaded_at=entry.loaded_at,
                idle_since=entry.idle_since if entry.pins == 0 else None, expires_at=expires,
                loads=entry.loads, error=entry.error, device=device)

    def states(self) -> list[ModelState]:
        """A snapshot of every model, the default first."""
        return [self.state(model) for model in self._entries]
