"""Running a batch: each line sent to chinwag's own endpoint in-process (``create_app`` through
httpx's ASGI transport, so a line is answered exactly as the server would answer it),
``parallel`` at a time (the engine batches them in one decode per step), each result written
and flushed as it finishes.

Files: the output (OpenAI's batch output lines ``{"id", "custom_id", "response":
{"status_code", "request_id", "body"}, "error": null}``, in completion order), the error file
(``LineError`` objects), and ``OUTPUT.state.json`` holding the input's SHA-256, so that
``resume`` refuses an input that changed since the run began. Resuming skips the lines
already in the output (a half-written last line, left by a kill, is cut off) and runs the
rest, failed ones included; the error file is written afresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from chinwag.batch.lines import BatchLine, LineError
from chinwag.errors import ConfigError


class BatchRefused(ConfigError):
    """A batch that cannot start: its output exists without ``resume``, or the input changed
    since the run being resumed began (the message says which and what to do)."""


@dataclass(frozen=True)
class BatchFiles:
    """Where a batch reads and writes.

    Attributes:
        input: the request lines.
        output: the results, one line each.
        errors: the failed lines.
    """

    input: Path
    output: Path
    errors: Path

    @property
    def state(self) -> Path:
        """``OUTPUT.state.json``: the input's SHA-256 when the run began."""
        return self.output.with_name(self.output.name + ".state.json")


@dataclass
class Progress:
    """How a batch is going.

    Attributes:
        total: lines in the input (failed ones included).
        done: lines answered, this run and before it (``skipped``).
        failed: lines in the error file.
        skipped: lines already in the output when resuming.
        completion_tokens: tokens generated this run.
        started: ``time.monotonic()`` when this run's lines began (the model loaded).
    """

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        """``{"total", "done", "failed", "skipped", "tokens_per_s", "elapsed_s",
        "eta_s"}`` (``eta_s`` None until a line of this run is done)."""
        elapsed = time.monotonic() - self.started
        this_run = self.done - self.skipped
        left = self.total - self.done - self.failed
        eta = elapsed / this_run * left if this_run else None
        return {"total": self.total, "done": self.done, "failed": self.failed,
                "skipped": self.skipped,
                "tokens_per_s": round(self.completion_tokens / elapsed, 1) if elapsed else 0.0,
                "elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def prepare(files: BatchFiles, *, resume: bool) -> set[str]:
    """Check the files for a new run or a resumed one; the ``custom_id`` of every line
    already answered (empty for a new run, whose output is then started afresh).

    Raises:
        BatchRefused: the output exists and ``resume`` is false; or resuming with no state
            file, or an input that changed since the run began.
        OSError: a file cannot be read or written.
    """
    digest = _sha256(files.input)
    if not resume:
        if files.output.exists() and files.output.stat().st_size > 0:
            raise BatchRefused(f"{files.output} already exists: resume the run with --resume, "
                               "or remove the file to start again")
        files.output.parent.mkdir(parents=True, exist_ok=True)
        files.output.write_text("")
        files.state.write_text(json.dumps({"input": str(files.input), "input_sha256": digest}))
        return set()
    try:
        state = json.loads(files.state.read_text())
    except (OSError, ValueError):
        raise BatchRefused(f"cannot resume: {files.state} is missing or unreadable (was "
                           f"{files.output} written by chinwag batch run?)") from None
    if state.get("input_sha256") != digest:
        raise BatchRefused(f"cannot resume: {files.input} changed since the run began (its "
                           "SHA-256 differs); start a new run with another output file")
    return answered(files.output)


def answered(output: Path) -> set[str]:
    """The ids in an output file; a last line cut short (a kill mid-write) is removed."""
    if not output.exists():
        output.write_text("")
        return set()
    raw = output.read_bytes()
    complete = raw[:raw.rfind(b"\n") + 1]
    if len(complete) != len(raw):
        output.write_bytes(complete)
    found: set[str] = set()
    for line in complete.decode("utf-8", errors="replace").splitlines():
        try:
            found.add(json.loads(line)["custom_id"])
        except (ValueError, KeyError, TypeError):
            continue
    return found


def write_line(out: IO[str], data: dict[str, Any]) -> None:
    """Write one JSON line and flush it (a kill loses at most the line being written)."""
    out.write(json.dumps(data, ensure_ascii=False) + "\n")
    out.flush()


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return (str(error.get("code") or f"http_{response.status_code}"),
            str(error.get("message") or response.text[:500]))


async def run_lines(client: httpx.AsyncClient, todo: list[BatchLine], out: IO[str],
                    errors: IO[str], progress: Progress, *, parallel: int = 8,
                    on_progress: Callable[[Progress], None] | None = None,
                    expired: Callable[[], bool] | None = None) -> list[BatchLine]:
    """Send each line of ``todo`` to its endpoint through ``client`` (a chinwag app behind
    httpx's ASGI transport), ``parallel`` at a time, writing each answer to ``out`` (a 200)
    or ``errors`` (anything else) as it finishes and counting it in ``progress``.

    Args:
        on_progress: called after each line.
        expired: asked before each line is sent; once it says True no more are sent.

    Returns:
        The lines never sent (``expired`` said so), in input order.
    """
    queue: asyncio.Queue[BatchLine] = asyncio.Queue()
    for line in todo:
        queue.put_nowait(line)

    async def work() -> None:
        while not queue.empty():
            if expired is not None and expired():
                return
            line = queue.get_nowait()
            request_id = uuid.uuid4().hex
            try:
                response = await client.post(line.url, json=line.body,
                                             headers={"X-Request-Id": request_id})
            except httpx.HTTPError as e:  # the app failed outright: the line fails
                write_line(errors, LineError(line.custom_id, line.line, "request_failed",
                                         str(e)).as_dict())
                progress.failed += 1
            else:
                answer = {"status_code": response.status_code, "request_id": request_id,
                          "body": _body_of(response)}
                if response.status_code == 200:
                    write_line(out, {"id": f"batch_req_{uuid.uuid4().hex}",
                                 "custom_id": line.custom_id, "response": answer,
                                 "error": None})
                    progress.done += 1
                    progress.completion_tokens += int(
                        (answer["body"].get("usage") or {}).get("completion_tokens") or 0)
                else:
                    code, message = _error_of(response)
                    write_line(errors, LineError(line.custom_id, line.line, code, message,
                                             answer).as_dict())
                    progress.failed += 1
            if on_progress is not None:
                on_progress(progress)

    await asyncio.gather(*(work() for _ in range(max(1, parallel))))
    left: list[BatchLine] = []
    while not queue.empty():
        left.append(queue.get_nowait())
    return left


def _body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"text": response.text[:2000]}


async def run_batch(app: Any, lines: list[BatchLine], line_errors: list[LineError],
                    files: BatchFiles, *, parallel: int = 8, resume: bool = False,
                    on_progress: Callable[[Progress], None] | None = None) -> Progress:
    """Run ``lines`` through ``app`` (a chinwag ASGI app; its lifespan is run here),
    ``parallel`` at a time, writing each result as it finishes (``run_lines``).

    Args:
        app: ``chinwag.server.create_app(...)``.
        lines: the runnable lines (``read_batch``).
        line_errors: the lines that could not be read, written to the error file first.
        files: the input, output and error files.
        parallel: lines in flight at once.
        resume: continue the run whose output is ``files.output`` (see ``prepare``).
        on_progress: called after each line.

    Returns:
        The final progress.

    Raises:
        BatchRefused, OSError: see ``prepare``.
    """
    done_before = prepare(files, resume=resume)
    progress = Progress(total=len(lines) + len(line_errors))
    todo = [line for line in lines if line.custom_id not in done_before]
    progress.skipped = progress.done = len(lines) - len(todo)
    with files.output.open("a", encoding="utf-8") as out, \
            files.errors.open("w", encoding="utf-8") as errors:
        for error in line_errors:
            write_line(errors, error.as_dict())
        progress.failed = len(line_errors)
        async with app.router.lifespan_context(app):
            progress.started = time.monotonic()  # timed from the model being ready
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://chinwag-batch",
                                         timeout=None) as client:
                await run_lines(client, todo, out, errors, progress, parallel=parallel,
                                on_progress=on_progress)
    return progress
