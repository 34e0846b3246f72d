"""Server batches, as OpenAI's Batches API runs them: a batch names an uploaded input file
(``files.FileStore``) and an endpoint; its lines run through the serving app itself (httpx's
ASGI transport, each request marked ``scope[BATCH_SCOPE]`` so that ``requester`` puts it in
the model's background line: batch lines take free places only, see ``server.queue``), and
its results are written as they finish to files in the same folder, which become the
batch's ``output_file_id`` and ``error_file_id`` when it ends.

Statuses (OpenAI's): ``validating`` (created, not started) -> ``in_progress`` ->
``finalizing`` -> ``completed``; ``failed`` when the input cannot be read at all;
``cancelling`` -> ``cancelled`` (the lines done so far are kept); ``expired`` when the
completion window (``24h``) ends first (the lines not run go to the error file with code
``batch_expired``). The status and times live in the database (``batches``), so a batch
survives a restart: the server resumes every unfinished batch when it starts, skipping the
lines already in its output (``runner.answered``) and running the rest, failed ones
included. While a batch runs, its ``request_counts`` come from memory; the database has them
from when it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from chinwag.batch.files import FileStore
from chinwag.batch.lines import URLS, BatchLine, LineError, read_batch
from chinwag.batch.runner import Progress, answered, run_lines, write_line
from chinwag.errors import BatchFinished, BatchNotFound, InvalidParams
from chinwag.store import Store

log = logging.getLogger("chinwag.batch")

BATCH_SCOPE = "chinwag.batch"
"""The ASGI scope key that marks a request as a line of the server batch it names."""

WINDOWS = {"24h": 24 * 3600}
"""Completion windows (OpenAI accepts only ``24h``), in seconds."""

UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
ENDED = ("completed", "failed", "expired", "cancelled")

_COLUMNS = ("id", "input_file_id", "endpoint", "completion_window", "status", "metadata",
            "errors", "output_file_id", "error_file_id", "total", "completed", "failed",
            "created_at", "expires_at", "in_progress_at", "finalizing_at", "completed_at",
            "failed_at", "expired_at", "cancelling_at", "cancelled_at")


@dataclass(frozen=True)
class BatchRecord:
    """One batch, as stored (times in unix seconds, None until reached).

    Attributes:
        errors: why the batch failed (``[{"code", "message", "param", "line"}]``), or None.
        total, completed, failed: its ``request_counts``.
    """

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    status: str
    metadata: dict[str, str] | None
    errors: list[dict[str, Any]] | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    created_at: int
    expires_at: int
    in_progress_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None

    def as_openai(self) -> dict[str, Any]:
        """OpenAI's Batch object."""
        return {"id": self.id, "object": "batch", "endpoint": self.endpoint,
                "errors": None if self.errors is None else {"object": "list",
                                                            "data": self.errors},
                "input_file_id": self.input_file_id,
                "completion_window": self.completion_window, "status": self.status,
                "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "created_at": self.created_at, "in_progress_at": self.in_progress_at,
                "expires_at": self.expires_at, "finalizing_at": self.finalizing_at,
                "completed_at": self.completed_at, "failed_at": self.failed_at,
                "expired_at": self.expired_at, "cancelling_at": self.cancelling_at,
                "cancelled_at": self.cancelled_at,
                "request_counts": {"total": self.total, "completed": self.completed,
                                   "failed": self.failed},
                "metadata": self.metadata}


def _record(row: tuple[Any, ...]) -> BatchRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for key in ("metadata", "errors"):
        values[key] = None if values[key] is None else json.loads(values[key])
    return BatchRecord(**values)


class _Marked:
    """The serving app, with every request it is given marked as ``batch_id``'s."""

    def __init__(self, app: ASGIApp, batch_id: str) -> None:
        self.app, self.batch_id = app, batch_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, BATCH_SCOPE: self.batch_id}, receive, send)


class Batches:
    """The server's batches: stored, run in the background, resumed after a restart.

    Args:
        store: the database (its ``batches`` table).
        files: the uploaded files (inputs) and where results go.
        parallel: lines of one batch sent at once (the model's queue decides how many run;
            the server sends one more than its places, so that the next line waits ready).
        api_key: the key the batch's own requests carry (one of ``Settings.api_keys()``),
            when the server requires one.
        clock: unix seconds now (tests pass their own to reach the end of the window).
    """

    def __init__(self, store: Store, files: FileStore, *, parallel: int,
                 api_key: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store, self.files, self.parallel = store, files, parallel
        self.api_key, self.clock = api_key, clock
        self._app: ASGIApp | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, Progress] = {}
        self._cancelled: set[str] = set()

    # -- the API's operations -------------------------------------------------------------

    def create(self, input_file_id: str, endpoint: str, completion_window: str,
               metadata: dict[str, str] | None = None) -> BatchRecord:
        """Store a new batch (``validating``); ``launch`` starts it.

        Raises:
            FileNotFound: no file has that id.
            InvalidParams: the file is not a batch input, the endpoint is not one of
                ``URLS``, the window is not one of ``WINDOWS``.
        """
        if self.files.get(input_file_id).purpose != "batch":
            raise InvalidParams(f"file {input_file_id} was not uploaded with purpose 'batch'",
                                param="input_file_id")
        if endpoint not in URLS:
            raise InvalidParams(f"endpoint must be one of {', '.join(URLS)}, not {endpoint!r}",
                                param="endpoint")
        if completion_window not in WINDOWS:
            raise InvalidParams(f"completion_window must be one of {', '.join(WINDOWS)}, not "
                                f"{completion_window!r}", param="completion_window")
        now = int(self.clock())
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        with self.store.transaction("create a batch") as db:
            db.execute(
                "INSERT INTO batches (id, input_file_id, endpoint, completion_window, status, "
                "metadata, created_at, expires_at) VALUES (?, ?, ?, ?, 'validating', ?, ?, ?)",
                (batch_id, input_file_id, endpoint, completion_window,
                 None if metadata is None else json.dumps(metadata), now,
                 now + WINDOWS[completion_window]))
        return self.get(batch_id)

    def get(self, batch_id: str) -> BatchRecord:
        """A batch, with its live counts while it runs.

        Raises:
            BatchNotFound: there is none.
        """
        with self.store.transaction("read a batch", write=False) as db:
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM batches WHERE id = ?",
                             (batch_id,)).fetchone()
        if row is None:
            raise BatchNotFound(batch_id)
        return self._live(_record(row))

    def page(self, *, after: str | None = None, limit: int = 20
             ) -> tuple[list[BatchRecord], bool]:
        """Batches, newest first, after the batch ``after``, at most ``limit``; and whether
        there are more.

        Raises:
            BatchNotFound: no batch ``after``."""
        where, args = "", []
        if after is not None:
            self.get(after)
            where, args = "WHERE rowid < (SELECT rowid FROM batches WHERE id = ?)", [after]
        with self.store.transaction("list batches", write=False) as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM batches {where} "
                              "ORDER BY rowid DESC LIMIT ?", (*args, limit + 1)).fetchall()
        return [self._live(_record(row)) for row in rows[:limit]], len(rows) > limit

    def request_cancel(self, batch_id: str) -> BatchRecord:
        """Mark a batch ``cancelling`` (nothing if it is already cancelling or cancelled);
        ``stop`` then ends it.

        Raises:
            BatchNotFound: there is none.
            BatchFinished: it has ended otherwise (completed, failed, expired).
        """
        record = self.get(batch_id)
        if record.status in ("cancelling", "cancelled"):
            return record
        if record.status in ENDED:
            raise BatchFinished(f"batch {batch_id} is {record.status}; only a batch that has "
                                "not ended can be cancelled")
        self._set(batch_id, status="cancelling", cancelling_at=int(self.clock()))
        return self.get(batch_id)

    async def stop(self, batch_id: str) -> None:
        """End a batch marked ``cancelling``: its lines in flight are cancelled, and it is
        ``cancelled`` with the results so far once this returns. Call it on the event loop."""
        task = self._tasks.get(batch_id)
        if task is None:  # not running here: end it now
            record = await asyncio.to_thread(self.get, batch_id)
            if record.status == "cancelling":
                await asyncio.to_thread(self._end, record, "cancelled", Progress(record.total))
            return
        self._cancelled.add(batch_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        record = await asyncio.to_thread(self.get, batch_id)
        if record.status == "cancelling":  # cancelled before it began: nothing ended it
            await asyncio.to_thread(self._end, record, "cancelled", Progress(record.total))

    # -- running ---------------------------------------------------------------------------

    async def start(self, app: ASGIApp) -> None:
        """Run batches through ``app`` from now on, resuming every unfinished one. Call it on
        the event loop once the app has started."""
        self._app = app
        for batch_id in await asyncio.to_thread(self._unfinished):
            log.info("resuming batch %s", batch_id)
            self.launch(batch_id)

    def launch(self, batch_id: str) -> None:
        """Start running a stored batch (nothing if it runs already or before ``start``)."""
        if self._app is None or batch_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._run(batch_id),
                                                      name=f"chinwag-{batch_id}")
        self._tasks[batch_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(batch_id, None))

    async def close(self) -> None:
        """Stop running batches (their lines in flight are dropped and run again when the
        server starts next: the batch stays unfinished in the database)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._app = None

    async def _run(self, batch_id: str) -> None:
        record = await asyncio.to_thread(self.get, batch_id)
        try:
            if record.status == "cancelling":
                raise asyncio.CancelledError
            await self._work(record)
        except asyncio.CancelledError:
            if batch_id not in self._cancelled and record.status != "cancelling":
                raise  # the server is stopping: the batch resumes when it starts again
            progress = self._progress.get(batch_id) or Progress(record.total)
            await asyncio.to_thread(self._end, record, "cancelled", progress)
        except Exception as e:  # a bug or a full disk: the batch fails, the server goes on
            log.exception("batch %s failed", batch_id)
            await asyncio.to_thread(self._fail, batch_id, "batch_failed", str(e))
        finally:
            self._progress.pop(batch_id, None)
            self._cancelled.discard(batch_id)

    async def _work(self, record: BatchRecord) -> None:
        """Run a batch to its end (completed, expired or failed)."""
        batch_id = record.id
        try:
            lines, line_errors = await asyncio.to_thread(
                read_batch, self.files.folder / record.input_file_id)
        except (OSError, UnicodeDecodeError) as e:
            await asyncio.to_thread(self._fail, batch_id, "invalid_file",
                                    f"the input file {record.input_file_id} cannot be read: {e}")
            return
        runnable, line_errors = _of_endpoint(lines, line_errors, record.endpoint)
        if not runnable and not line_errors:
            await asyncio.to_thread(self._fail, batch_id, "empty_file",
                                    f"the input file {record.input_file_id} has no lines")
            return
        output, errors = self._paths(batch_id)
        progress = Progress(total=len(runnable) + len(line_errors))
        done_before = await asyncio.to_thread(self._begin, record, output, progress.total)
        todo = [line for line in runnable if line.custom_id not in done_before]
        progress.skipped = progress.done = len(runnable) - len(todo)
        progress.failed = len(line_errors)
        self._progress[batch_id] = progress
        with output.open("a", encoding="utf-8") as out, \
                errors.open("w", encoding="utf-8") as failed:
            for error in line_errors:
                write_line(failed, error.as_dict())
            left = await self._send(batch_id, todo, out, failed, progress, record.expires_at)
            for line in left:
                write_line(failed, LineError(
                    line.custom_id, line.line, "batch_expired",
                    "the batch's completion window ended before this line ran").as_dict())
                progress.failed += 1
        await asyncio.to_thread(self._end, record, "expired" if left else "completed", progress)

    async def _send(self, batch_id: str, todo: list[BatchLine], out: Any, failed: Any,
                    progress: Progress, expires_at: int) -> list[BatchLine]:
        assert self._app is not None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        transport = httpx.ASGITransport(app=_Marked(self._app, batch_id))
        async with httpx.AsyncClient(transport=transport, base_url="http://chinwag-batch",
                                     headers=headers, timeout=None) as client:
            return await run_lines(client, todo, out, failed, progress,
                                   parallel=self.parallel,
                                   expired=lambda: self.clock() >= expires_at)

    # -- the database and the files --------------------------------------------------------

    def _unfinished(self) -> list[str]:
        with self.store.transaction("find unfinished batches", write=False) as db:
            return [row[0] for row in db.execute(
                "SELECT id FROM batches WHERE status IN (?, ?, ?, ?) ORDER BY rowid",
                UNFINISHED)]

    def _paths(self, batch_id: str) -> tuple[Path, Path]:
        return (self.files.folder / f"{batch_id}.output.jsonl",
                self.files.folder / f"{batch_id}.errors.jsonl")

    def _begin(self, record: BatchRecord, output: Path, total: int) -> set[str]:
        """Mark the batch ``in_progress``; the ids already answered (none for a new one,
        whose output is started afresh)."""
        self.files.folder.mkdir(parents=True, exist_ok=True)
        if record.status == "validating":
            output.write_text("")
            done: set[str] = set()
        else:
            done = answered(output)
        self._set(record.id, status="in_progress", total=total,
                  in_progress_at=record.in_progress_at or int(self.clock()))
        return done

    def _end(self, record: BatchRecord, status: str, progress: Progress) -> None:
        """Turn the result files into stored files and give the batch its last status
        (nothing if it has one already: a cancel that came while it was ending)."""
        if self.get(record.id).status in ENDED:
            return
        now = int(self.clock())
        if status != "cancelled":
            self._set(record.id, status="finalizing", finalizing_at=now)
        output, errors = self._paths(record.id)
        kept = {}
        for path, key, name in ((output, "output_file_id", "output"),
                                (errors, "error_file_id", "errors")):
            if path.exists() and path.stat().st_size > 0:
                kept[key] = self.files.adopt(path, f"{record.id}_{name}.jsonl").id
            else:
                path.unlink(missing_ok=True)
        self._set(record.id, status=status, completed=progress.done, failed=progress.failed,
                  total=max(progress.total, record.total), **{f"{status}_at": now}, **kept)

    def _fail(self, batch_id: str, code: str, message: str) -> None:
        self._set(batch_id, status="failed", failed_at=int(self.clock()),
                  errors=json.dumps([{"code": code, "message": message, "param": None,
                                      "line": None}]))

    def _set(self, batch_id: str, **values: Any) -> None:
        assert all(key in _COLUMNS for key in values)
        with self.store.transaction("update a batch") as db:
            db.execute(f"UPDATE batches SET {', '.join(f'{k} = ?' for k in values)} "
                       "WHERE id = ?", (*values.values(), batch_id))

    def _live(self, record: BatchRecord) -> BatchRecord:
        progress = self._progress.get(record.id)
        if progress is None:
            return record
        return replace(record, total=progress.total, completed=progress.done,
                       failed=progress.failed)


def _of_endpoint(lines: list[BatchLine], errors: list[LineError],
                 endpoint: str) -> tuple[list[BatchLine], list[LineError]]:
    """The lines for the batch's endpoint; the others become errors (in line order)."""
    kept = [line for line in lines if line.url == endpoint]
    wrong = [LineError(line.custom_id, line.line, "endpoint_mismatch",
                       f"the line's url is {line.url} but the batch's endpoint is {endpoint}")
             for line in lines if line.url != endpoint]
    return kept, sorted(errors + wrong, key=lambda e: e.line)
