"""``chinwag batch run IN.jsonl -o OUT.jsonl``: a file of requests in OpenAI's batch format
through the engine (``chinwag.batch``), written as each line finishes, resumable.

Exit status: 0 when every line succeeded, 3 when some failed (see the error file), 2 for bad
usage or an input that cannot be read (or a run that cannot be resumed).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar

from chinwag.batch import BatchFiles, Progress, read_batch, run_batch
from chinwag.cli.common import (
    ConfigOpt,
    LlmOpt,
    ModelOpt,
    NCtxOpt,
    PersonasOpt,
    ThreadsOpt,
    err_console,
    settings_from,
)
from chinwag.errors import ChinwagError

app = typer.Typer(name="batch", add_completion=False, no_args_is_help=True,
                  help="Run files of requests in OpenAI's batch format.")

def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(2)


@app.command("run")
def run(
    input_file: Annotated[Path, typer.Argument(help="The requests, one JSON line each.",
                                               show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the results go, "
                                         "one JSON line each, as they finish.",
                                         show_default=False)],
    errors: Annotated[Path | None, typer.Option(
        "--errors", help="Where failed lines go (default: OUTPUT.errors.jsonl).",
        show_default=False)] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run: lines already in OUTPUT are not "
        "done again (refused if the input changed).")] = False,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=64,
                                          help="Lines generated at once.")] = 8,
    progress: Annotated[str, typer.Option(
        "--progress", help="auto (a bar on a terminal), bar, json (one object a second on "
        "stdout), none.")] = "auto",
    model: ModelOpt = None, llm: LlmOpt = None, n_ctx: NCtxOpt = None,
    threads: ThreadsOpt = None, personas_dir: PersonasOpt = None, config: ConfigOpt = None,
) -> None:
    """Run INPUT_FILE's requests (chat, completions, embeddings, or the short form
    {"custom_id", "persona", "prompt", "schema"}) and write OUTPUT."""
    from chinwag.server import create_app

    if progress not in ("auto", "bar", "json", "none"):
        raise _fail(f"--progress must be auto, bar, json or none, not {progress!r}")
    files = BatchFiles(input_file, output,
                       errors or output.with_name(output.name.removesuffix(".jsonl")
                                                  + ".errors.jsonl"))
    try:
        lines, line_errors = read_batch(input_file)
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"cannot read {input_file}: {e}") from None
    try:
        settings = settings_from(config, model=model, llm=llm, n_ctx=n_ctx, n_threads=threads,
                                 personas_dir=personas_dir, parallel=parallel,
                                 max_queue=max(16, 2 * parallel))
    except ChinwagError as e:
        raise _fail(str(e)) from None
    report = Reporter(progress, len(lines) + len(line_errors))
    try:
        app = create_app(settings, close_backend=True, run_batches=False)
        final = asyncio.run(run_batch(app, lines, line_errors, files, parallel=parallel,
                                      resume=resume, on_progress=report))
    except ChinwagError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(str(e)) from None
    finally:
        report.close()
    summary = final.as_dict()
    err_console.print(f"{summary['done']} of {summary['total']} lines done"
                      + (f" ({summary['skipped']} before this run)" if final.skipped else "")
                      + f", {summary['failed']} failed"
                      + (f" (see {files.errors})" if final.failed else "")
                      + f"; {summary['tokens_per_s']} tokens/s over {summary['elapsed_s']} s;"
                      f" results in {files.output}")
    if final.failed:
        raise typer.Exit(3)


class Reporter:
    """Shows a batch's progress: a rich bar on stderr (``bar``), one JSON object a second on
    stdout (``json``: ``Progress.as_dict``), or nothing (``none``); ``auto`` is a bar on a
    terminal, else nothing."""

    def __init__(self, mode: str, total: int) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        self.mode = mode
        self._last = 0.0
        self._bar: Bar | None = None
        if mode == "bar":
            self._bar = Bar(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]} failed, {task.fields[rate]} tok/s"),
                            TimeRemainingColumn(), console=err_console)
            self._task = self._bar.add_task("lines", total=total, failed=0, rate=0.0)
            self._bar.start()

    def __call__(self, p: Progress) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=p.done + p.failed, failed=p.failed,
                             rate=p.as_dict()["tokens_per_s"])
        elif self.mode == "json":
            now = time.monotonic()
            if now - self._last >= 1.0 or p.done + p.failed == p.total:
                self._last = now
                print(json.dumps(p.as_dict()), flush=True)

    def close(self) -> None:
        """Stop the bar (the summary line follows it)."""
        if self._bar is not None:
            self._bar.stop()
